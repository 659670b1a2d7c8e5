"""What changed between two builds of a dataset.

  petpipe diff OUT/image_folder/flowers/1.0.0 NEW/image_folder/flowers/1.0.0
  petpipe diff OLD NEW --json > changes.json

Prints a one-screen summary (files added, removed, changed, relabelled, moved between
splits, renamed; counts per split and class), or with `--json` every file. Exits 0 when the
two hold the same files, 1 when they differ, 2 when a folder cannot be read: a data CI job
can fail on any change. The work is `petpipe.pipeline.diff_datasets`.
"""

from __future__ import annotations

import json

import click

from petpipe import pipeline
from petpipe.images import errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("old", type=click.Path(file_okay=False))
@click.argument("new", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print every difference as JSON.")
def main(old: str, new: str, as_json: bool) -> None:
  """Compares the built dataset folder NEW with OLD."""
  try:
    diff = pipeline.diff_datasets(old, new)
  except (OSError, ValueError) as e:
    error = click.ClickException(errors.one_line(e))
    error.exit_code = 2
    raise error from None
  click.echo(json.dumps(diff.to_json(), indent=1, ensure_ascii=False) if as_json
             else diff.summary())
  raise click.exceptions.Exit(0 if diff.same else 1)


if __name__ == "__main__":
  main()
