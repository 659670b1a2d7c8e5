"""Writes a synthetic PetImages folder (or zip) for trying the builders without the download.

  python scripts/make_sample_data.py --out /tmp/pets --per-class 200
  python scripts/make_sample_data.py --out /tmp/pets --zip   # kagglecatsanddogs_5340.zip
"""

from __future__ import annotations

import os

import click

from petpipe import sample_data


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write PetImages/ (or the zip) into.")
@click.option("--per-class", default=50, show_default=True, type=int,
              help="Good cat images; dogs are per-class x imbalance.")
@click.option("--min-size", default=250, show_default=True, type=int, help="Smallest image side.")
@click.option("--max-size", default=500, show_default=True, type=int, help="Largest image side.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--imbalance", default=1.0, show_default=True, type=float,
              help="Dog count / cat count (1.0 = balanced).")
@click.option("--no-anomalies", is_flag=True, help="Only good images: no broken or odd files.")
@click.option("--zip", "as_zip", is_flag=True,
              help=f"Write {sample_data.ARCHIVE_NAME} instead of a folder.")
def main(out_dir: str, per_class: int, min_size: int, max_size: int, seed: int,
         imbalance: float, no_anomalies: bool, as_zip: bool):
  """Writes PetImages/Cat/<N>.jpg and PetImages/Dog/<N>.jpg under OUT."""
  kwargs = dict(per_class=per_class, min_size=min_size, max_size=max_size, seed=seed,
                imbalance=imbalance, anomalies=not no_anomalies)
  try:
    if as_zip:
      where = os.path.join(out_dir, sample_data.ARCHIVE_NAME)
      report = sample_data.write_sample_zip(where, **kwargs)
    else:
      report = sample_data.write_sample_folder(out_dir, **kwargs)
      where = report.root
  except (ValueError, FileExistsError) as e:
    # Bad values are user errors: one line, no traceback.
    raise click.ClickException(str(e)) from None
  counts = ", ".join(f"{name}: {count}" for name, count in report.counts.items())
  click.echo(f"Wrote {counts} good images and {len(report.anomalies)} anomalies to {where}")


if __name__ == "__main__":
  main()
