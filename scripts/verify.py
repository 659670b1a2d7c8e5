"""Verify a built dataset: every record's CRC and every shard's count against its metadata.

    python scripts/verify.py OUT/pet_images/gray100/1.0.0
"""

from __future__ import annotations

import os

import click

from petpipe.pipeline import verify as verify_lib


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--split", "splits", multiple=True, help="Only these splits (default: all).")
def main(dataset_dir: str, splits: tuple[str, ...]) -> None:
  if not os.path.exists(os.path.join(dataset_dir, "dataset_info.json")):
    raise click.ClickException(f"{dataset_dir} is not a built dataset folder: it has no dataset_info.json")
  try:
    verify_lib.check_sizes(dataset_dir, splits or None)
    reports = verify_lib.verify(dataset_dir, splits or None)
  except (verify_lib.CorruptDatasetError, KeyError) as e:
    raise click.ClickException(str(e).strip("'\"")) from None
  click.echo(f"OK: {len(reports)} shard(s), {sum(r.records for r in reports)} records, every CRC and count as recorded")


if __name__ == "__main__":
  main()
