"""Writes pictures of a built dataset: a grid of examples and its card's statistics.

    petpipe show OUT/pet_images/gray100/1.0.0 --split train --n 16 --out pictures/
"""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset_dir", type=click.Path(file_okay=False))
@click.option("--split", default="train", show_default=True, help="The split to show.")
@click.option("--n", "count", default=16, show_default=True, type=click.IntRange(min=1),
              help="Examples in the grid.")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder the PNG files go to.")
def main(dataset_dir: str, split: str, count: int, out_dir: str) -> None:
  """Writes a PNG grid of examples (label and file name) and a PNG of the build card."""
  from petpipe import show  # imported here: it starts TensorFlow, which -h does not need
  from petpipe.images import errors

  try:
    written = show.show(dataset_dir, out_dir, split, count)
  except (OSError, ValueError) as e:
    raise click.ClickException(errors.one_line(e)) from None
  click.echo("Wrote " + ", ".join(p for p in written if p))


if __name__ == "__main__":
  main()
