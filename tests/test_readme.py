"""The training page's Python example (docs/training.md) runs as printed and leaves its
resumable state."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_example(section: str) -> str:
  text = open(os.path.join(REPO, "docs", "training.md"), encoding="utf-8").read()
  body = text.split(f"## {section}\n", 1)[1]
  return re.search(r"```python\n(.*?)```", body, re.S).group(1)


@pytest.mark.slow
def test_readme_python_training_example_trains_and_saves_its_state(tmp_path):
  code = _python_example("Train from Python")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

  def run():
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout

  output = run()
  assert "Epoch 2/2" in output and output.strip().splitlines()[-1].startswith("2 {")
  assert os.path.exists(tmp_path / "outputs" / "api" / "state.json")
