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

from petpipe.models import keras_compat

MULTI_WORKER = "multi_worker"
MIRRORED = "mirrored"
DEFAULT = "default"
# The TF_CONFIG task types that train; parameter servers and evaluators belong to other
# strategies.
TRAINING_TASKS = ("chief", "worker")

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
    keras_compat.patch_fit_for_multi_worker()
    # It reads the cluster and this task from TF_CONFIG itself.
    return tf.distribute.MultiWorkerMirroredStrategy()
  if where.kind == MIRRORED:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def global_batch_size(per_replica: int, replicas: int) -> int:
  """The batch the input pipeline makes: tf.distribute splits it over the replicas."""
  return per_replica * max(1, replicas)


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
