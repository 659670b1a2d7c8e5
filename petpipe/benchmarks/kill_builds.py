"""Kill -9 a pet_images build at random moments; check it never leaves a broken dataset.

After every kill the final dataset folder must be absent or complete; the last,
uninterrupted run must clean the leftovers and write shards byte-identical to a
build that was never interrupted. Each build runs in its own process
(`python -c` over the installed `petpipe.builders`), so it can be killed.

    from petpipe.benchmarks import kill_builds
    result = kill_builds.run_on_sample(kills=20)
    assert result["ok"]
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable

_BUILD = """
import sys
import tensorflow_datasets as tfds
from petpipe.builders.pet_images import pet_images_dataset_builder as p
builder = p.Builder(config="gray100", data_dir=sys.argv[2])
print("BUILDING", flush=True)
builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[1]))
print("DONE", flush=True)
"""
VERSION_DIR = ("pet_images", "gray100", "1.0.0")


def _start(manual_dir: str, data_dir: str) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen(
      [sys.executable, "-c", _BUILD, manual_dir, data_dir],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
  )


def _wait_for(proc: subprocess.Popen, marker: str) -> None:
  for line in proc.stdout:
    if line.startswith(marker):
      return
  raise RuntimeError(f"build exited with {proc.wait()} before printing {marker}")


def shard_hashes(data_dir: str) -> dict:
  folder = os.path.join(data_dir, *VERSION_DIR)
  return {
      name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
      for name in sorted(os.listdir(folder))
      if ".tfrecord" in name
  }


def final_dir_is_absent_or_complete(data_dir: str) -> bool:
  folder = os.path.join(data_dir, *VERSION_DIR)
  if not os.path.exists(folder):
    return True
  names = set(os.listdir(folder))
  return {"dataset_info.json", "features.json", "manifest.jsonl"} <= names and any(".tfrecord" in n for n in names)


def leftovers(data_dir: str) -> list[str]:
  parent = os.path.join(data_dir, *VERSION_DIR[:2])
  return [n for n in os.listdir(parent) if n.startswith("incomplete.")] if os.path.isdir(parent) else []


def run(manual_dir: str, workdir: str, kills: int, seed: int = 0) -> dict:
  """Reference build, `kills` killed builds into one data_dir, then a finishing build."""
  rng = random.Random(seed)
  reference = os.path.join(workdir, "reference")
  proc = _start(manual_dir, reference)
  _wait_for(proc, "BUILDING")
  start = time.perf_counter()
  _wait_for(proc, "DONE")
  build_seconds = time.perf_counter() - start
  proc.wait()

  target = os.path.join(workdir, "killed")
  killed_at, broken = [], 0
  for _ in range(kills):
    proc = _start(manual_dir, target)
    _wait_for(proc, "BUILDING")
    delay = rng.uniform(0, build_seconds)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at.append(round(delay, 3))
    broken += not final_dir_is_absent_or_complete(target)
    if os.path.exists(os.path.join(target, *VERSION_DIR)):
      # The build finished before the kill: start again from nothing.
      subprocess.run(["rm", "-rf", os.path.join(target, *VERSION_DIR)], check=True)
  left_before = len(leftovers(target))
  proc = _start(manual_dir, target)
  _wait_for(proc, "DONE")
  proc.wait()
  return {
      "build_seconds": build_seconds,
      "killed_at_seconds": killed_at,
      "broken_final_dirs": broken,
      "leftovers_before_last_run": left_before,
      "leftovers_after_last_run": len(leftovers(target)),
      "identical_to_uninterrupted": shard_hashes(target) == shard_hashes(reference),
  }


def run_on_sample(kills: int = 20, images: int = 400, seed: int = 0,
                  log: Callable[[str], None] = print) -> dict:
  """`run` on a generated folder of `images` sample images per class, in a temporary folder.

  Returns `run`'s result plus `ok`: no broken final folder, no leftovers after the last run,
  shards identical to the uninterrupted build. `log` receives one line per result.
  """
  if kills < 0:
    raise ValueError(f"`kills` must be at least 0. Received: kills={kills}")
  if images < 1:
    raise ValueError(f"`images` must be at least 1. Received: images={images}")
  from petpipe import sample_data

  with tempfile.TemporaryDirectory() as workdir:
    sample_data.write_sample_folder(os.path.join(workdir, "in"), per_class=images, min_size=64, max_size=160, seed=seed)
    result = run(os.path.join(workdir, "in"), workdir, kills, seed)
  for key, value in result.items():
    log(f"{key}: {value}")
  result["ok"] = (result["broken_final_dirs"] == 0 and result["leftovers_after_last_run"] == 0
                  and result["identical_to_uninterrupted"])
  log("OK" if result["ok"] else "FAILED")
  return result
