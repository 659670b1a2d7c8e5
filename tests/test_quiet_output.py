"""The `petpipe` command prints its own messages only: no TensorFlow start-up lines, no
libjpeg warnings from the files it reads, no warnings our code causes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from petpipe import console
from petpipe import sample_data
from petpipe.builders import tfds_compat
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder

# What the commands print on stderr themselves: progress bars (tqdm's, TFDS's) and our
# one-line notes. Anything else (a TensorFlow log line, a libjpeg warning, a Python warning)
# is not ours.
OURS = re.compile(
    r"(\d+%\|.*\||\d+ (examples|files) \[|it/s|files/s|examples/s|splits/s|s/ (examples|splits)|"
    r"^Shuffling |^\s*(\x1b\[A)*\s*$|^Skipped \d+ of \d+ files)")


def _petpipe(*args, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(env_extra or {})
  return subprocess.run([sys.executable, "-m", "petpipe", *map(str, args)], capture_output=True,
                        text=True, env=env, timeout=timeout)


def _not_ours(stderr: str) -> list[str]:
  lines = [line for line in re.split(r"[\r\n]", stderr) if line.strip()]
  return [line for line in lines if not OURS.search(line)]


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> str:
  """Sample pictures with the real set's broken files, one making libjpeg warn."""
  root = str(tmp_path_factory.mktemp("quiet"))
  report = sample_data.write_sample_folder(root, per_class=12, min_size=40, max_size=80)
  assert any(a.kind == "extraneous_bytes" for a in report.anomalies)
  return report.root


@pytest.mark.slow
def test_the_demo_prints_no_line_that_is_not_ours(tmp_path):
  result = _petpipe("train", "--epochs", 1, "--out", tmp_path / "out",
                    env_extra={"PETPIPE_CACHE": str(tmp_path / "cache")})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Test accuracy" in result.stdout
  assert _not_ours(result.stderr) == []


@pytest.mark.slow
def test_training_on_a_folder_and_predicting_print_no_libjpeg_or_tensorflow_lines(pets, tmp_path):
  out = tmp_path / "run"
  trained = _petpipe("train", "--folder", pets, "--epochs", 1, "--image-size", 24,
                     "--model", "mlp", "--seed", 0, "--out", out)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert _not_ours(trained.stderr) == []
  predicted = _petpipe("predict", "--model", out / "model.keras", os.path.join(pets, "Cat"))
  # Files a build would skip are reported, one `path: error: reason` line each.
  lines = [line for line in predicted.stderr.splitlines() if line.strip()]
  assert lines and all(": error: " in line for line in lines), predicted.stderr[-3000:]
  assert not any("Corrupt JPEG" in line for line in lines)


def test_tensorflows_start_up_lines_are_shown_when_asked_for():
  code = "from petpipe import console; console.start_tensorflow(); print('started')"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
  quiet = {k: v for k, v in env.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  # The two processes start at once (each has its own environment and output).
  procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e) for e in (env, quiet)]
  try:
    (shown_out, shown_err), (hidden_out, hidden_err) = (p.communicate(timeout=300) for p in procs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert shown_out.strip() == hidden_out.strip() == "started"
  assert "oneDNN" in shown_err or "cuda" in shown_err.lower()
  assert hidden_err.strip() == ""


def test_the_decoder_warning_filter_drops_libjpegs_lines_and_passes_the_rest(capfd):
  with console.without_decoder_warnings():
    os.write(2, b"progress 10%\rprogress 20%\r")
    os.write(2, b"Corrupt JPEG data: 22 extraneous bytes before marker 0xd9\n")
    os.write(2, b"a line of ours\nCorrupt ")
    os.write(2, b"JPEG data: 1 extraneous bytes\nCorrupted but ours\n")
  err = capfd.readouterr().err
  assert err == "progress 10%\rprogress 20%\ra line of ours\nCorrupted but ours\n"


@pytest.mark.parametrize("bars", [True, False])
def test_a_builds_validation_bar_follows_tfds_disable_progress_bar(pets, tmp_path, capfd, bars):
  before = tfds_compat.progress_bars_enabled()
  (tfds.enable_progress_bar if bars else tfds.disable_progress_bar)()
  try:
    config = FolderConfig(name="bars", root=pets, encoding="raw",
                          image_size=8, channels=1)
    image_folder.Builder(config=config, data_dir=str(tmp_path)).download_and_prepare()
  finally:
    (tfds.enable_progress_bar if before else tfds.disable_progress_bar)()
  assert ("Validating images" in capfd.readouterr().err) == bars
