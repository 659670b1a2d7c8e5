"""Measure Beam builds and tf.data service input against local ones, on one generated folder.

See `petpipe.benchmarks.distributed` for what is measured. Writes
OUT/distributed_benchmark.json and prints a table.

    python scripts/benchmark_distributed.py --images 2000 --out benchmark_results
"""

from __future__ import annotations

import click

from petpipe.benchmarks import distributed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", default=2000, show_default=True, help="Good images in total.")
@click.option("--repeats", default=3, show_default=True, help="Epochs timed per input path (best kept).")
@click.option("--out", default="benchmark_results", show_default=True)
def main(images: int, repeats: int, out: str) -> None:
  """Measure Beam builds and tf.data service input against local ones."""
  try:
    distributed.run(images=images, repeats=repeats, out_dir=out, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
