"""Verify a built dataset: every record's CRC and every shard's count against its metadata.

    python scripts/verify.py OUT/pet_images/gray100/1.0.0
    python scripts/verify.py OUT/image_folder/flowers/1.0.0 --against /data/flowers
"""

from __future__ import annotations

import os

import click
import tensorflow as tf

from petpipe.pipeline import verify as verify_lib


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
# Plain strings, checked through tf.io.gfile: either may be on gs://, s3:// or another file system.
@click.argument("dataset_dir")
@click.option("--split", "splits", multiple=True, help="Only these splits (default: all).")
@click.option("--against", "against",
              help="Also check that the source files (a folder or zip) still have the sha256 of the build.")
def main(dataset_dir: str, splits: tuple[str, ...], against: str | None) -> None:
  if not tf.io.gfile.exists(os.path.join(dataset_dir, "dataset_info.json")):
    raise click.ClickException(f"{dataset_dir} is not a built dataset folder: it has no dataset_info.json")
  if against and not tf.io.gfile.exists(against):
    raise click.ClickException(f"--against {against} does not exist")
  try:
    verify_lib.check_sizes(dataset_dir, splits or None)
    reports = verify_lib.verify(dataset_dir, splits or None)
  except (verify_lib.CorruptDatasetError, KeyError) as e:
    raise click.ClickException(str(e).strip("'\"")) from None
  click.echo(f"OK: {len(reports)} shard(s), {sum(r.records for r in reports)} records, every CRC and count as recorded")
  if against:
    try:
      problems = verify_lib.changed_sources(dataset_dir, against)
    except FileNotFoundError as e:
      raise click.ClickException(str(e)) from None
    for path, problem in problems:
      click.echo(f"{problem}: {path}")
    if problems:
      raise click.ClickException(f"{len(problems)} source file(s) of {against} changed or missing since the build")
    click.echo(f"OK: every stored file of {against} has the sha256 recorded at build time")


if __name__ == "__main__":
  main()
