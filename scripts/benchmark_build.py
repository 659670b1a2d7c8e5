"""Measure pet_images builds against TFDS's cats_vs_dogs recipe and a decode floor.

See `petpipe.benchmarks.build_speed` for what each build does. Each runs in a fresh
process; writes OUT/build_benchmark.json and OUT/build_benchmark.png and prints the table
and the goals.

    python scripts/benchmark_build.py --images 5000 --repeats 3 --out benchmark_results
"""

from __future__ import annotations

import click

from petpipe.benchmarks import build_speed  # imports TensorFlow only when it runs


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", default=5000, show_default=True,
              help="Good images in total (half per class).")
@click.option("--min-size", default=250, show_default=True)
@click.option("--max-size", default=500, show_default=True)
@click.option("--out", default="benchmark_results", show_default=True,
              help="Folder for build_benchmark.json and build_benchmark.png.")
@click.option("--workdir", default=None,
              help="Folder for the sample images, reused between runs "
                   "(default: a temporary one, removed after).")
@click.option("--only", default=",".join(build_speed.BUILDS), show_default=True,
              help="Comma-separated builds to run.")
@click.option("--repeats", default=1, show_default=True,
              help="Runs per build, each in a fresh process; the fastest is kept.")
def main(images: int, min_size: int, max_size: int, out: str, workdir: str | None, only: str,
         repeats: int) -> None:
  """Measure pet_images builds against TFDS's cats_vs_dogs recipe and a decode floor."""
  builds = tuple(name.strip() for name in only.split(",") if name.strip())
  try:
    build_speed.run(images=images, min_size=min_size, max_size=max_size, out_dir=out,
                    work_dir=workdir, builds=builds, repeats=repeats, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
