"""Measure how builds grow with the number of files, locally and on Beam.

See `petpipe.benchmarks.scale` for what is measured. Writes OUT/scale_benchmark.json and
prints a table.

    petpipe benchmark-scale --sizes 10000,100000 --engines local,launcher
"""

from __future__ import annotations

import click

from petpipe.benchmarks import scale


def _ints(ctx, param, value: str) -> list[int]:
  try:
    return [int(v) for v in value.split(",") if v]
  except ValueError:
    raise click.BadParameter(f"a comma-separated list of file counts. Received: {value}") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sizes", default="10000,100000,1000000", show_default=True, callback=_ints,
              help="Files per generated folder, comma-separated.")
@click.option("--engines", default=",".join(scale.ENGINES), show_default=True,
              help="local, beam (DirectRunner's engine, 2 worker processes), launcher "
                   "(a separate job service: what a cluster's launcher holds).")
@click.option("--cache-dir", default=None, help="Where generated folders are kept "
              "[default: $PETPIPE_CACHE or ~/.cache/petpipe].")
@click.option("--out", default="benchmark_results", show_default=True)
def main(sizes: list[int], engines: str, cache_dir: str, out: str) -> None:
  """Measure how builds grow with the number of files, locally and on Beam."""
  try:
    scale.run(sizes=sizes, engines=[e for e in engines.split(",") if e], cache_dir=cache_dir,
              out_dir=out, log=click.echo)
  except (ValueError, RuntimeError) as e:
    raise click.ClickException(str(e)) from None


if __name__ == "__main__":
  main()
