"""scripts/train.py beyond one process: the training input on a tf.data service, and two
workers on 127.0.0.1 under MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from petpipe.pipeline import service
from tests import data_service_servers
from tests.test_train import ROOT, SCRIPT, _assert_ok, _metrics, invoke, write_shards

# Ample for the few seconds two tiny runs take, short enough that a stuck worker fails the
# test instead of hanging it.
WORKERS_TIMEOUT = 150


@pytest.mark.slow
def test_training_through_the_data_service_sees_each_example_once(tmp_path, monkeypatch):
  # 22 examples in 4 shards of 5-6, batches of 4: the two service workers batch their own
  # shards, so the count below holds only if every example came exactly once.
  shards = write_shards(str(tmp_path / "data"), {"train": 22, "validation": 6, "test": 6},
                        num_shards=4)
  routed = []
  real = service.through_service

  def spy(dataset, address, job_name=None, **kwargs):
    routed.append(address)
    return real(dataset, address, job_name, **kwargs)

  monkeypatch.setattr(service, "through_service", spy)
  out = tmp_path / "out"
  with data_service_servers.running(workers=2) as address:
    result = invoke(["--shards", shards, "--model", "mlp", "--epochs", 1, "--batch-size", 4,
                     "--seed", 3, "--data-service", address, "--out", out])
  _assert_ok(result)
  metrics = _metrics(out)
  assert metrics["config"]["data_service"] == address
  assert routed == [address]  # the training split of the one epoch, and nothing else
  assert [row["examples"] for row in metrics["epochs"]] == [22]
  assert metrics["final"]["test"]["examples"] == 6


def _free_ports(count: int) -> list[int]:
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _weights(path: str) -> list[np.ndarray]:
  return [np.asarray(w) for w in keras.models.load_model(path).weights]


@pytest.mark.slow
def test_two_workers_train_to_identical_weights_and_only_the_chief_writes(tmp_path):
  # 4 shards for 2 workers: each reads its own 2 files (FILE).
  shards = write_shards(str(tmp_path / "data"), {"train": 24, "validation": 8, "test": 8},
                        num_shards=4)
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  outs = [tmp_path / f"out{i}" for i in range(2)]
  kept = [tmp_path / f"worker{i}" for i in range(2)]
  procs, logs = [], []
  try:
    for index in range(2):
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PETPIPE_WORKER_DIR=str(kept[index]),
                 TF_CONFIG=json.dumps({"cluster": cluster,
                                       "task": {"type": "worker", "index": index}}))
      args = ["--shards", shards, "--model", "mlp", "--epochs", 2, "--batch-size", 4,
              "--seed", 7, "--deterministic", "--out", outs[index]]
      logs.append(open(tmp_path / f"log{index}.txt", "w+"))
      procs.append(subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], cwd=ROOT,
                                    env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
    deadline = time.monotonic() + WORKERS_TIMEOUT
    codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for log in logs:
      log.close()
  texts = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
  assert codes == [0, 0], "\n\n".join(t[-3000:] for t in texts)
  assert "Worker 1 done" in texts[1]

  # Only the chief (worker 0) writes --out; worker 1 kept its copy where it was told to.
  for name in ("model.keras", "metrics.json", "classes.json"):
    assert os.path.exists(outs[0] / name), name
  assert not os.path.exists(outs[0] / "backup")  # the run completed
  assert not os.path.exists(outs[1])
  assert not os.path.exists(kept[0])
  assert os.path.exists(kept[1] / "model.keras")

  chief, other = _weights(str(outs[0] / "model.keras")), _weights(str(kept[1] / "model.keras"))
  assert len(chief) == len(other) > 0
  for left, right in zip(chief, other):
    np.testing.assert_array_equal(left, right)

  metrics = _metrics(outs[0])
  assert metrics["config"]["strategy"] == {
      "name": "MultiWorkerMirroredStrategy", "workers": 2, "replicas": 2,
      "global_batch_size": 8, "train_shard_policy": "FILE"}
  # Each epoch, the two workers' steps together took every training example once.
  assert [row["examples"] for row in metrics["epochs"]] == [24, 24]
  assert metrics["final"]["test"]["examples"] == 8
