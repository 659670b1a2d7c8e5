"""Kill builds at random moments and check the result is identical to an uninterrupted one.

See `petpipe.benchmarks.kill_builds`. Exits 1 if any check fails.

    python scripts/stress_kill_build.py --kills 20
"""

from __future__ import annotations

import sys

import click

from petpipe.benchmarks import kill_builds
from petpipe.benchmarks.kill_builds import run  # noqa: F401  (tests/test_kill_safe_build.py calls it from here)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--kills", default=20, show_default=True)
@click.option("--images", default=400, show_default=True, help="Sample images per class.")
@click.option("--seed", default=0, show_default=True)
def main(kills: int, images: int, seed: int) -> None:
  """Kill builds at random moments and check the result is identical to an uninterrupted one."""
  try:
    result = kill_builds.run_on_sample(kills=kills, images=images, seed=seed, log=click.echo)
  except (ValueError, FileNotFoundError) as e:
    raise click.ClickException(str(e)) from None
  sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
  main()
