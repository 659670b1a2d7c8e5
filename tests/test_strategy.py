"""The strategy and input split follow TF_CONFIG and the GPUs, with only the environment
variable and the device query mocked."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from petpipe.models import strategy
from petpipe.pipeline import sharding

FILE, DATA, OFF = (sharding.AutoShardPolicy.FILE, sharding.AutoShardPolicy.DATA,
                   sharding.AutoShardPolicy.OFF)


def _gpu(index: int) -> tf.config.PhysicalDevice:
  return tf.config.PhysicalDevice(name=f"/physical_device:GPU:{index}", device_type="GPU")


@pytest.fixture
def machine(monkeypatch):
  """Sets TF_CONFIG (None: unset) and the number of GPUs the device query reports."""
  real = tf.config.list_physical_devices

  def use(tf_config=None, gpus: int = 0):
    if tf_config is None:
      monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
      monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str)
                         else json.dumps(tf_config))
    devices = [_gpu(i) for i in range(gpus)]
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: list(devices) if kind == "GPU" else real(kind))
  return use


def _cluster(workers: int, task_type: str = "worker", index: int = 0, chief: bool = False):
  cluster = {"worker": [f"127.0.0.1:{2220 + i}" for i in range(workers)]}
  if chief:
    cluster["chief"] = ["127.0.0.1:2219"]
  return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def test_one_cpu_machine_uses_the_default_strategy(machine):
  machine()
  where = strategy.placement()
  assert where == strategy.Placement(kind=strategy.DEFAULT, workers=1, worker_index=0,
                                     task_type=None, gpus=0)
  assert where.is_chief and not where.multi_worker
  assert where.strategy_name == "default"


@pytest.mark.parametrize("gpus, kind", [(0, strategy.DEFAULT), (1, strategy.DEFAULT),
                                        (2, strategy.MIRRORED), (8, strategy.MIRRORED)])
def test_several_gpus_use_mirrored_strategy(machine, gpus, kind):
  machine(gpus=gpus)
  where = strategy.placement()
  assert (where.kind, where.gpus, where.is_chief) == (kind, gpus, True)


def test_tf_config_of_one_worker_is_one_machine(machine):
  machine(_cluster(1), gpus=2)
  where = strategy.placement()
  assert (where.kind, where.workers, where.is_chief) == (strategy.MIRRORED, 1, True)


@pytest.mark.parametrize("gpus", [0, 2])
def test_two_workers_use_multi_worker_strategy_and_worker_0_is_chief(machine, gpus):
  machine(_cluster(2, index=0), gpus=gpus)
  first = strategy.placement()
  machine(_cluster(2, index=1), gpus=gpus)
  second = strategy.placement()
  for where in (first, second):
    assert where.multi_worker and where.workers == 2 and where.gpus == gpus
    assert where.strategy_name == "MultiWorkerMirroredStrategy"
  assert (first.worker_index, first.is_chief) == (0, True)
  assert (second.worker_index, second.is_chief) == (1, False)


def test_a_chief_task_writes_and_the_workers_follow_it(machine):
  machine(_cluster(2, "chief", 0, chief=True))
  chief = strategy.placement()
  assert (chief.workers, chief.worker_index, chief.task_type, chief.is_chief) == \
      (3, 0, "chief", True)
  machine(_cluster(2, "worker", 0, chief=True))
  worker = strategy.placement()
  assert (worker.worker_index, worker.task_type, worker.is_chief) == (1, "worker", False)


def test_arguments_stand_in_for_the_environment(machine):
  machine(gpus=0)
  where = strategy.placement(json.dumps(_cluster(3, index=2)), gpus=1)
  assert (where.kind, where.workers, where.worker_index, where.gpus) == \
      (strategy.MULTI_WORKER, 3, 2, 1)


@pytest.mark.parametrize("tf_config, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker"}},
     "ps tasks"),
    ({"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief"}}, "more than one chief"),
    ({"cluster": {"worker": ["a:1", "b:2"]}}, "is not one of"),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}},
     "is not one of"),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}},
     "is not one of"),
])
def test_bad_tf_config_is_a_value_error(machine, tf_config, fragment):
  machine(tf_config)
  with pytest.raises(ValueError, match=fragment):
    strategy.placement()


@pytest.mark.parametrize("files, workers, policy", [
    (4, 2, FILE), (2, 2, FILE), (1, 2, DATA), (3, 4, DATA), (0, 2, DATA), (4, 1, OFF),
])
def test_shard_policy_is_file_when_every_worker_gets_a_file(files, workers, policy):
  assert sharding.shard_policy(files, workers) == policy


@pytest.mark.parametrize("num_files, workers", [(4, 2), (5, 2), (3, 3), (7, 3)])
def test_file_sharding_gives_each_file_to_exactly_one_worker(num_files, workers):
  files = [f"x-train.tfrecord-{i:05d}" for i in range(num_files)]
  shares = [sharding.shard_files(files, i, workers, FILE) for i in range(workers)]
  assert all(shares)
  assert sorted(f for share in shares for f in share) == files


def test_data_sharding_reads_every_file_on_every_worker():
  files = ["a", "b", "c"]
  assert sharding.shard_files(files, 3, 4, DATA) == files


def test_input_options_leave_chosen_files_alone():
  # FILE: the files are already this worker's, so tf.distribute must not shard again.
  assert sharding.input_options(FILE).experimental_distribute.auto_shard_policy == OFF
  assert sharding.input_options(DATA).experimental_distribute.auto_shard_policy == DATA


def test_global_batch_is_per_replica_batch_times_replicas():
  assert strategy.global_batch_size(32, 1) == 32
  assert strategy.global_batch_size(32, 4) == 128


def test_single_process_needs_no_collectives():
  where = strategy.Placement()
  assert strategy.create(where) is tf.distribute.get_strategy()
  assert strategy.gather_from_workers(None, where, [7, 3]) == [[7, 3]]
