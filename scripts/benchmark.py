"""Measure input pipelines side by side (images/s, time to first batch, peak RSS).

Each loader runs in a fresh process and delivers one epoch of 32 x 100x100x1 batches, on
generated and natural pictures, with the decode ceilings and the raw-format loops of the
same run beside them; see `petpipe.benchmarks.input_speed` for what each one is. Writes
OUT/benchmark.json and OUT/benchmark.png and prints the tables and the goals.

    python scripts/benchmark.py --images 5000 --repeats 3      # the full comparison
    python scripts/benchmark.py --images 300 --only keras,shards_jpeg --sets natural --no-raw-10x
    python scripts/benchmark.py --images 5000 --rss
"""

from __future__ import annotations

from typing import Optional

import click

from petpipe.benchmarks import input_speed


def _names(text: str) -> tuple:
  return tuple(name.strip() for name in text.split(",") if name.strip())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", default=5000, show_default=True,
              help="Good sample images in total (half per class).")
@click.option("--out", default="benchmark_results", show_default=True,
              help="Folder for benchmark.json and benchmark.png.")
@click.option("--work", default=None, help="Data folder, reused between runs [default: OUT/data].")
@click.option("--only", default=",".join(input_speed.LOADERS), show_default=True,
              help="Comma-separated loaders to run.")
@click.option("--sets", default=",".join(input_speed.PICTURE_SETS), show_default=True,
              help="Comma-separated picture sets the JPEG loaders run on.")
@click.option("--raw-10x/--no-raw-10x", default=True, show_default=True,
              help=f"Also run the raw loaders over {input_speed.RAW_SCALE}x the images.")
@click.option("--repeats", default=1, show_default=True,
              help="Runs per loader, each in a fresh process; the fastest is kept.")
@click.option("--rss/--no-rss", default=False, show_default=True,
              help="Also measure peak RSS streaming N and 10xN raw images.")
def main(images: int, out: str, work: Optional[str], only: str, sets: str, raw_10x: bool,
         repeats: int, rss: bool) -> None:
  """Measure input pipelines side by side (images/s, time to first batch, peak RSS)."""
  try:
    config = input_speed.InputSpeedConfig(
        images=images, out_dir=out, work_dir=work, loaders=_names(only),
        picture_sets=_names(sets), raw_10x=raw_10x, repeats=repeats, rss=rss)
    input_speed.run(config, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
