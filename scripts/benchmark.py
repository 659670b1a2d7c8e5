"""Measure input pipelines side by side (images/s, peak RSS) on one generated folder.

Seven loaders, each in a fresh process, deliver one epoch of 32 x 100x100x1 float32
batches; see `petpipe.benchmarks.input_speed` for what each one is. Writes
OUT/benchmark.json and OUT/benchmark.png and prints a table.

    python scripts/benchmark.py --images 5000 --out benchmark_results
    python scripts/benchmark.py --images 300 --only keras,folder_loader,shards_raw
    python scripts/benchmark.py --images 5000 --rss --repeats 3
"""

from __future__ import annotations

from typing import Optional

import click

from petpipe.benchmarks import input_speed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", default=5000, show_default=True,
              help="Good sample images in total (half per class).")
@click.option("--out", default="benchmark_results", show_default=True,
              help="Folder for benchmark.json and benchmark.png.")
@click.option("--work", default=None, help="Data folder, reused between runs [default: OUT/data].")
@click.option("--only", default=",".join(input_speed.LOADERS), show_default=True,
              help="Comma-separated loaders to run.")
@click.option("--repeats", default=1, show_default=True,
              help="Runs per loader, each in a fresh process; the fastest is kept.")
@click.option("--rss/--no-rss", default=False, show_default=True,
              help="Also measure peak RSS streaming N and 10xN raw images.")
def main(images: int, out: str, work: Optional[str], only: str, repeats: int, rss: bool) -> None:
  """Measure input pipelines side by side (images/s, peak RSS); write JSON and a PNG chart."""
  loaders = tuple(name.strip() for name in only.split(",") if name.strip())
  try:
    config = input_speed.InputSpeedConfig(images=images, out_dir=out, work_dir=work,
                                          loaders=loaders, repeats=repeats, rss=rss)
    input_speed.run(config, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
