"""Measure a pet_images build against TFDS's cats_vs_dogs recipe on one generated folder.

See `petpipe.benchmarks.build_speed` for what each side does. Writes
OUT/build_benchmark.json and prints a table.

    python scripts/benchmark_build.py --images 5000 --out benchmark_results
"""

from __future__ import annotations

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", default=5000, show_default=True, help="Good images in total (half per class).")
@click.option("--min-size", default=250, show_default=True)
@click.option("--max-size", default=500, show_default=True)
@click.option("--out", default="benchmark_results", show_default=True, help="Folder for build_benchmark.json.")
@click.option("--workdir", default=None, help="Scratch folder (default: a temporary one, removed after).")
def main(images: int, min_size: int, max_size: int, out: str, workdir: str | None) -> None:
  """Measure a pet_images build against TFDS's cats_vs_dogs recipe (files/s)."""
  from petpipe.benchmarks import build_speed  # starts TensorFlow: not for `-h`

  try:
    build_speed.run(images=images, min_size=min_size, max_size=max_size, out_dir=out,
                    work_dir=workdir, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
