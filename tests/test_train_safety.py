"""A training run owns its output folder, and a full disk never corrupts its saved state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import keras
import pytest

from petpipe import experiment
from petpipe.models import checkpoint
from petpipe.pipeline import folder_lock
from petpipe.pipeline import verify
from tests.test_train import (CLASSES, ROOT, SCRIPT, _assert_ok, _assert_one_line_error, invoke,
                              write_folder, write_shards)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
  return write_shards(str(tmp_path_factory.mktemp("data") / "tiny" / "1.0.0"))


@pytest.mark.slow
def test_a_second_run_on_the_same_out_fails_at_once_naming_the_first(shards, tmp_path):
  out = tmp_path / "out"
  first = subprocess.Popen(
      [sys.executable, SCRIPT, "--shards", shards, "--model", "mlp", "--epochs", "500",
       "--batch-size", "4", "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  try:
    lock = out / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
      assert first.poll() is None, "the first run ended early"
      time.sleep(0.2)
    second = invoke(["--shards", shards, "--model", "mlp", "--epochs", 1, "--out", out])
    _assert_one_line_error(second, f"is being trained by process {first.pid} ")
  finally:
    first.kill()
    first.wait()
  # The OS released the killed run's lock: a run on this folder may start again.
  with folder_lock.exclusive(str(out / ".lock"), "test"):
    pass


@pytest.fixture
def small_disk(tmp_path):
  disk = tmp_path / "disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                    capture_output=True).returncode != 0:
    pytest.skip("mounting a small tmpfs needs root")
  try:
    yield disk
  finally:
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk, leave_bytes: int) -> None:
  stat = os.statvfs(disk)
  free = stat.f_bavail * stat.f_frsize
  with open(disk / "filler", "wb") as f:
    f.write(b"\0" * max(free - leave_bytes, 0))


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_state_and_ends_with_one_error_line(shards, small_disk):
  out = small_disk / "out"
  args = ["--shards", shards, "--model", "mlp", "--batch-size", 8, "--seed", 1,
          "--out", out]
  _assert_ok(invoke(args + ["--epochs", 1]))
  # A completed run's state: metrics.json's "resume" and the weights in model.keras.
  before = experiment.finished_state(str(out)), (out / "model.keras").read_bytes()
  assert before[0] is not None
  # Room for the small JSON files, not for another copy of the weights.
  _fill(small_disk, leave_bytes=48 * 1024)
  # Without the best checkpoint, the first write of weights is the backup's, after epoch 2.
  result = subprocess.run([sys.executable, SCRIPT, *map(str, args), "--epochs", "3",
                           "--no-best-checkpoint"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
  errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr[-2000:]
  assert (experiment.finished_state(str(out)), (out / "model.keras").read_bytes()) == before
  assert checkpoint.load(str(out / "backup")) is None
  leftovers = [n for _, _, files in os.walk(out) for n in files
               if n.startswith("tmp-") or n.endswith(".tmp")]
  assert not leftovers


@pytest.mark.slow
def test_resuming_on_rebuilt_data_is_refused_naming_what_changed(tmp_path):
  folder = str(tmp_path / "data" / "tiny" / "1.0.0")
  glob = write_shards(folder)
  args = ["--shards", glob, "--model", "mlp", "--batch-size", 8, "--seed", 1,
          "--out", tmp_path / "out"]
  _assert_ok(invoke(args + ["--epochs", 1]))
  # Rebuilt in place with the classes in the other order: same files, same counts.
  shutil.rmtree(folder)
  write_shards(folder, class_names=tuple(reversed(CLASSES)))
  _assert_one_line_error(invoke(args + ["--epochs", 2]), "the data's class names ([\"dog\", \"cat\"] now")


@pytest.mark.slow
def test_resuming_on_a_folder_with_a_file_added_is_refused(tmp_path):
  folder = write_folder(str(tmp_path / "pets"))
  args = ["--folder", folder, "--model", "mlp", "--image-size", 16, "--seed", 2,
          "--out", tmp_path / "out"]
  _assert_ok(invoke(args + ["--epochs", 1]))
  shutil.copy(os.path.join(folder, CLASSES[0], "0.png"), os.path.join(folder, CLASSES[0], "new.png"))
  _assert_one_line_error(invoke(args + ["--epochs", 2]), "the data's files")


def _flip_a_byte(path: str) -> None:
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    f.seek(0)
    f.write(data)


def test_a_corrupt_record_ends_training_with_one_error_line_naming_the_shard(tmp_path):
  glob = write_shards(str(tmp_path / "data" / "tiny" / "1.0.0"))
  shard = sorted(tmp_path.glob("data/tiny/1.0.0/tiny-train.tfrecord*"))[1]
  _flip_a_byte(str(shard))
  result = invoke(["--shards", glob, "--model", "mlp", "--epochs", 1, "--out", tmp_path / "out"])
  _assert_one_line_error(result, f"{shard}: corrupted record")
  assert f"run `petpipe verify {shard.parent}`" in result.output


class _CorruptAfterFirstEpoch(keras.callbacks.Callback):
  def __init__(self, path: str):
    super().__init__()
    self.path = path

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == 1:
      _flip_a_byte(self.path)


@pytest.mark.slow
def test_a_record_corrupted_during_training_is_named_with_its_shard(tmp_path):
  glob = write_shards(str(tmp_path / "data" / "tiny" / "1.0.0"))
  shard = str(sorted(tmp_path.glob("data/tiny/1.0.0/tiny-validation.tfrecord*"))[0])
  with pytest.raises(verify.CorruptDatasetError, match=f"^{shard}: corrupted record .*; run "
                     "`petpipe verify .*` to check every shard"):
    experiment.run(experiment.RunConfig(shards=glob, model="mlp", epochs=2, batch_size=8, seed=1,
                                        out=str(tmp_path / "out")),
                   callbacks=[_CorruptAfterFirstEpoch(shard)])
