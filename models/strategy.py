"""Which `tf.distribute` strategy a run trains under, and how its input is split.

`TF_CONFIG` naming two or more training tasks (chief and workers) gives
`MultiWorkerMirroredStrategy`; otherwise several visible GPUs give `MirroredStrategy`;
otherwise the default strategy. The choice (`Placement`) is a pure function of TF_CONFIG and
the device query, so it can be tested by mocking `os.environ` and
`tf.config.list_physical_devices` alone; `create` then makes the strategy (for several
workers it also adapts Keras 3's trainer, which fails under that strategy as released).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

import tensorflow as tf

MULTI_WORKER = "multi_worker"
MIRRORED = "mirrored"
DEFAULT = "default"
# The TF_CONFIG task types that train; parameter servers and evaluators belong to other
# strategies.
TRAINING_TASKS = ("chief", "worker")

AutoShardPolicy = tf.data.experimental.AutoShardPolicy

_STRATEGY_NAMES = {
    MULTI_WORKER: "MultiWorkerMirroredStrategy",
    MIRRORED: "MirroredStrategy",
    DEFAULT: "default",
}


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where this process trains.

  Attributes:
    kind: MULTI_WORKER, MIRRORED or DEFAULT.
    workers: training processes of the cluster (1 without a multi-worker TF_CONFIG).
    worker_index: this process's place among them, the chief (if any) first.
    task_type: its TF_CONFIG task type ("chief" or "worker"); None on one machine.
    gpus: GPUs visible to this process.
  """

  kind: str = DEFAULT
  workers: int = 1
  worker_index: int = 0
  task_type: Optional[str] = None
  gpus: int = 0

  @property
  def multi_worker(self) -> bool:
    return self.kind == MULTI_WORKER

  @property
  def is_chief(self) -> bool:
    """The one process that writes outputs: the "chief" task, else worker 0."""
    return self.worker_index == 0

  @property
  def strategy_name(self) -> str:
    return _STRATEGY_NAMES[self.kind]


def _training_tasks(tf_config: Optional[str]) -> tuple[dict, dict]:
  """TF_CONFIG's cluster (training tasks only) and task; both empty without TF_CONFIG."""
  if not tf_config or not tf_config.strip():
    return {}, {}
  try:
    value = json.loads(tf_config)
  except ValueError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}).") from None
  if not isinstance(value, dict):
    raise ValueError(f"TF_CONFIG must be a JSON object. Received: {tf_config!r}")
  cluster, task = value.get("cluster") or {}, value.get("task") or {}
  if not isinstance(cluster, dict) or not isinstance(task, dict):
    raise ValueError('TF_CONFIG needs "cluster" and "task" objects.')
  others = sorted(set(cluster) - set(TRAINING_TASKS))
  if others:
    raise ValueError(f"TF_CONFIG has {', '.join(others)} tasks; only chief and worker tasks "
                     "are supported (MultiWorkerMirroredStrategy).")
  if len(cluster.get("chief") or []) > 1:
    raise ValueError("TF_CONFIG names more than one chief.")
  return {t: list(cluster.get(t) or []) for t in TRAINING_TASKS}, task


def placement(tf_config: Optional[str] = None, gpus: Optional[int] = None) -> Placement:
  """This process's placement, from TF_CONFIG and the visible GPUs.

  Args:
    tf_config: TF_CONFIG's text; None reads the environment variable.
    gpus: visible GPUs; None asks `tf.config.list_physical_devices`.

  Raises:
    ValueError: TF_CONFIG is malformed, names other task types, or (with two or more
      training tasks) does not say which one this process is.
  """
  if tf_config is None:
    tf_config = os.environ.get("TF_CONFIG")
  if gpus is None:
    gpus = len(tf.config.list_physical_devices("GPU"))
  cluster, task = _training_tasks(tf_config)
  workers = sum(len(addresses) for addresses in cluster.values())
  if workers >= 2:
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in TRAINING_TASKS or not isinstance(index, int) or \
        not 0 <= index < len(cluster[task_type]):
      raise ValueError(f"TF_CONFIG's task {task!r} is not one of its cluster's "
                       f"{', '.join(t for t in TRAINING_TASKS if cluster[t])} tasks.")
    # The chief comes first, so that worker_index 0 is always the one that writes.
    worker_index = index if task_type == "chief" else len(cluster["chief"]) + index
    return Placement(kind=MULTI_WORKER, workers=workers, worker_index=worker_index,
                     task_type=task_type, gpus=gpus)
  return Placement(kind=MIRRORED if gpus > 1 else DEFAULT, gpus=gpus)


def create(where: Placement) -> tf.distribute.Strategy:
  """The strategy for `where`. A multi-worker strategy must be created before any other
  TensorFlow op runs in the process, and connects to the other workers."""
  if where.multi_worker:
    _patch_keras_for_multi_worker()
    # It reads the cluster and this task from TF_CONFIG itself.
    return tf.distribute.MultiWorkerMirroredStrategy()
  if where.kind == MIRRORED:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def global_batch_size(per_replica: int, replicas: int) -> int:
  """The batch the input pipeline makes: tf.distribute splits it over the replicas."""
  return per_replica * max(1, replicas)


def shard_policy(num_files: int, workers: int) -> AutoShardPolicy:
  """How the input of one split is divided among `workers` training processes.

  FILE when every worker gets at least one file: each reads only its own files, so no
  record is read twice. DATA otherwise: every worker reads every file and keeps every
  n-th batch, which wastes reads but is right with any number of files (with FILE, a
  worker without a file would have nothing to train on). OFF for a single worker.
  """
  if workers <= 1:
    return AutoShardPolicy.OFF
  return AutoShardPolicy.FILE if num_files >= workers else AutoShardPolicy.DATA


def shard_files(files: Sequence, where: Placement, policy: AutoShardPolicy) -> list:
  """The files this worker reads under `policy`: every n-th file for FILE, else all."""
  if policy == AutoShardPolicy.FILE:
    return list(files[where.worker_index::where.workers])
  return list(files)


def input_options(policy: AutoShardPolicy) -> tf.data.Options:
  """The tf.data options for a pipeline built on `shard_files(files, where, policy)`.

  FILE switches tf.data's own rewrite OFF, because the files were already chosen: the
  rewrite would pick the same ones, but it fails on this project's pipelines, which zip a
  stream of per-batch seeds (a source it cannot shard) beside the record readers.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      AutoShardPolicy.OFF if policy == AutoShardPolicy.FILE else policy)
  return options


def gather_from_workers(strategy: tf.distribute.Strategy, where: Placement,
                        values: Sequence[int]) -> list[list[int]]:
  """Every worker's `values` (integers), by worker index; all workers must call it."""
  if not where.multi_worker:
    return [list(values)]
  row = tf.constant([[where.worker_index, *values]], tf.int64)
  rows = strategy.gather(strategy.run(lambda: tf.identity(row)), axis=0).numpy().tolist()
  # One row per replica: a worker with several GPUs appears several times.
  by_worker = {int(r[0]): [int(v) for v in r[1:]] for r in rows}
  return [by_worker[i] for i in sorted(by_worker)]


_patched = False


def _patch_keras_for_multi_worker() -> None:
  """Makes Keras 3's `fit` and `evaluate` run under a multi-worker strategy.

  Keras 3 (keras-team/keras#20585, still so in 3.15) fails there in two places, both in
  `keras.src.backend.tensorflow.trainer`:

  * `_maybe_symbolic_build` averages a whole input batch across the workers (through
    `strategy.reduce`, which takes no nested values) only to learn its shapes and dtypes:
    this worker's own batch tells the same;
  * `reduce_per_replica` averages each step's logs with `axis=0`, which scalar logs do not
    have: scalars are averaged across replicas alone. (The logs Keras returns per epoch
    are read from the metrics' variables, summed over all workers, so they are exact.)

  The patch changes nothing for other strategies.
  """
  global _patched
  if _patched:
    return
  from keras.src import tree
  from keras.src.backend.tensorflow import trainer as tf_trainer

  needed = ("reduce_per_replica", "_collective_all_reduce_multi_worker", "TensorFlowTrainer")
  if not all(hasattr(tf_trainer, name) for name in needed) or \
      not hasattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build"):
    raise RuntimeError("This Keras version's trainer cannot be adapted to "
                       "MultiWorkerMirroredStrategy; multi-worker training needs Keras 3.15.")
  in_multi_worker = tf_trainer._collective_all_reduce_multi_worker
  reduce_per_replica = tf_trainer.reduce_per_replica
  symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

  def reduce_logs(values, strategy, reduction="auto"):
    if reduction in ("auto", "mean") and in_multi_worker(strategy):
      def mean(value):
        if value is None:
          return None
        local = strategy.experimental_local_results(value)[0]
        return strategy.reduce("MEAN", value, axis=None if local.shape.rank == 0 else 0)
      return tree.map_structure(mean, values)
    return reduce_per_replica(values, strategy, reduction)

  def build_from_local_batch(self, iterator=None, data_batch=None):
    strategy = self.distribute_strategy
    if iterator is None or not in_multi_worker(strategy):
      return symbolic_build(self, iterator=iterator, data_batch=data_batch)
    for _, _, batches in iterator:
      data_batch = tree.map_structure(
          lambda v: None if v is None else strategy.experimental_local_results(v)[0],
          next(batches))
      break
    return symbolic_build(self, data_batch=data_batch)

  tf_trainer.reduce_per_replica = reduce_logs
  tf_trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
  _patched = True
