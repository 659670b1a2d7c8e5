"""Kill -9 during a build never leaves a broken dataset; the next run finishes identically."""

import importlib.util
import os

import pytest

from petpipe.builders import sample_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
  spec = importlib.util.spec_from_file_location("stress_kill_build", os.path.join(REPO, "scripts", "stress_kill_build.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_five_random_kills_then_a_clean_identical_build(tmp_path):
  sample_data.write_sample_folder(str(tmp_path / "in"), per_class=150, min_size=48, max_size=120, seed=11)
  result = _script().run(str(tmp_path / "in"), str(tmp_path), kills=5, seed=1)
  assert len(result["killed_at_seconds"]) == 5
  assert result["broken_final_dirs"] == 0
  assert result["leftovers_after_last_run"] == 0
  assert result["identical_to_uninterrupted"]
