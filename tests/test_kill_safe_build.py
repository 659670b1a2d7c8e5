"""Kill -9 during a build never leaves a broken dataset; the next run finishes identically."""

import pytest

from petpipe.benchmarks import kill_builds
from petpipe import sample_data


@pytest.mark.slow
def test_three_random_kills_then_a_clean_identical_build(tmp_path):
  sample_data.write_sample_folder(str(tmp_path / "in"), per_class=150, min_size=48, max_size=120, seed=11)
  result = kill_builds.run(str(tmp_path / "in"), str(tmp_path), kills=3, seed=1)
  assert len(result["killed_at_seconds"]) == 3
  assert result["broken_final_dirs"] == 0
  assert result["leftovers_after_last_run"] == 0
  assert result["identical_to_uninterrupted"]
