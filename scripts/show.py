"""Writes pictures of a built dataset: a grid of examples and its card's statistics; or of a
training run's suspect labels.

    petpipe show OUT/pet_images/gray100/1.0.0 --split train --n 16 --out pictures/
    petpipe show --suspects outputs/cnn --out pictures/
"""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset_dir", type=click.Path(file_okay=False), required=False)
@click.option("--suspects", "run_dir", type=click.Path(file_okay=False), metavar="RUN",
              help="Instead of a dataset: a training run's folder, whose suspects.csv (the "
              "files of highest loss) is drawn with given and predicted labels.")
@click.option("--split", default="train", show_default=True, help="The split to show.")
@click.option("--n", "count", default=16, show_default=True, type=click.IntRange(min=1),
              help="Examples in the grid.")
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder the PNG files go to.")
def main(dataset_dir: str, run_dir: str, split: str, count: int, out_dir: str) -> None:
  """Writes a PNG grid of examples (label and file name) and a PNG of the build card, or with
  --suspects RUN a PNG grid of the run's suspect labels."""
  if bool(dataset_dir) == bool(run_dir):
    raise click.UsageError("Give a DATASET_DIR or --suspects RUN (one of them).")
  from petpipe import show  # imported here: it starts TensorFlow, which -h does not need
  from petpipe.images import errors

  try:
    written = ([show.show_suspects(run_dir, out_dir, count)] if run_dir
               else show.show(dataset_dir, out_dir, split, count))
  except (OSError, ValueError) as e:
    raise click.ClickException(errors.one_line(e)) from None
  click.echo("Wrote " + ", ".join(p for p in written if p))


if __name__ == "__main__":
  main()
