"""Distributed paths measured side by side, in one run, on one generated folder.

1. Build: the local pet_images build vs the same build on Beam's DirectRunner
   with 2 worker processes (files/s, ratio).
2. Input: one epoch of the JPEG ("original") training split, decoded to
   100x100 grayscale batches of 32, locally vs through a tf.data service with 1
   and then 2 workers on 127.0.0.1, each started as its own process by the
   project's command (`python -m petpipe data-service ...`).

    from petpipe.benchmarks import distributed
    results = distributed.run(images=2000, repeats=3, out_dir="benchmark_results")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

# The servers run the installed `petpipe data-service` command, not a file of the checkout.
_SERVICE_COMMAND = (sys.executable, "-m", "petpipe", "data-service")


def _build(manual: str, data_dir: str, config: str, beam_options=None):
  import tensorflow_datasets as tfds
  from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images

  builder = pet_images.Builder(config=config, data_dir=data_dir)
  start = time.perf_counter()
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual, beam_options=beam_options)
  )
  return builder, time.perf_counter() - start


def _epoch_rate(make_dataset, repeats: int) -> float:
  best = 0.0
  for _ in range(repeats):
    ds = make_dataset()
    start = time.perf_counter()
    count = sum(int(labels.shape[0]) for _, labels in ds)
    best = max(best, count / (time.perf_counter() - start))
  return best


class _Servers:
  """A dispatcher and N workers on 127.0.0.1, as separate processes."""

  def __init__(self, workers: int):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = list(_SERVICE_COMMAND)
    self.procs = [subprocess.Popen(cmd + ["dispatcher", "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)]
    try:
      self.address = self._line(self.procs[0], "dispatcher listening on").rsplit(" ", 1)[1]
      for _ in range(workers):
        proc = subprocess.Popen(cmd + ["worker", "--dispatcher", self.address], stderr=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        self._line(proc, "worker registered")
    except BaseException:
      self.close()
      raise

  @staticmethod
  def _line(proc, text):
    for line in proc.stderr:
      if text in line:
        return line.strip()
    raise RuntimeError(f"server exited before printing {text!r}")

  def close(self):
    for proc in self.procs:
      proc.kill()
      proc.wait()


def run(images: int = 2000, repeats: int = 3, out_dir: str = "benchmark_results",
        log: Callable[[str], None] = print) -> dict:
  """Measures builds (local vs Beam) and input (local vs tf.data service) on one folder.

  Input rates are the best of `repeats` epochs. Writes and returns
  `out_dir/distributed_benchmark.json`; `log` receives the table (`print` by default).
  """
  if images < 2:
    raise ValueError(f"`images` must be at least 2. Received: images={images}")
  if repeats < 1:
    raise ValueError(f"`repeats` must be at least 1. Received: repeats={repeats}")
  from apache_beam.options.pipeline_options import PipelineOptions

  from petpipe import pipeline
  from petpipe import sample_data
  from petpipe.pipeline import service

  scratch = tempfile.mkdtemp(prefix="dist_bench_")
  try:
    manual = os.path.join(scratch, "in")
    report = sample_data.write_sample_folder(manual, per_class=images // 2, min_size=250, max_size=500, seed=0)
    files = sum(report.counts.values()) + len(report.anomalies)
    _, local_s = _build(manual, os.path.join(scratch, "local"), "gray100")
    beam_options = PipelineOptions(
        ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    )
    _, beam_s = _build(manual, os.path.join(scratch, "beam"), "gray100", beam_options)

    jpeg, _ = _build(manual, os.path.join(scratch, "jpeg"), "original")
    config = pipeline.PipelineConfig(image_size=100, channels=1, batch_size=32, seed=0)
    local = lambda: pipeline.from_dataset_dir(jpeg.data_dir, "train", config)
    rates = {"local": _epoch_rate(local, repeats)}
    for workers in (1, 2):
      servers = _Servers(workers)
      try:
        remote = lambda: service.through_service(local(), servers.address)
        rates[f"service_{workers}_workers"] = _epoch_rate(remote, repeats)
      finally:
        servers.close()

    results = {
        "files": files,
        "build_files_per_s": {"local": files / local_s, "beam_direct_2_workers": files / beam_s},
        "build_beam_over_local": local_s / beam_s,
        "input_images_per_s": rates,
        "input_over_local": {k: v / rates["local"] for k, v in rates.items()},
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "distributed_benchmark.json"), "w") as f:
      json.dump(results, f, indent=2)
    log(f"\nbuild ({files} files, gray100):")
    for name, rate in results["build_files_per_s"].items():
      log(f"  {name:<24}{rate:>8.0f} files/s")
    log(f"  Beam / local: {results['build_beam_over_local']:.2f}x")
    log("input (train split, JPEG -> 100x100 gray, batches of 32):")
    for name, rate in rates.items():
      log(f"  {name:<24}{rate:>8.0f} images/s  {results['input_over_local'][name]:.2f}x local")
    log(f"wrote {os.path.join(out_dir, 'distributed_benchmark.json')}")
    return results
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
