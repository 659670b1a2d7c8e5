"""The one place that reaches into private Keras (`keras.src`): a fix for multi-worker `fit`.

Keras 3 cannot `fit` under `tf.distribute.MultiWorkerMirroredStrategy` as released
(keras-team/keras#20585). `patch_fit_for_multi_worker` replaces two private functions of
its TensorFlow trainer, only when multi-worker training starts, after checking the Keras
version and that the functions are where they were (a clear error otherwise).
"""

from __future__ import annotations

import keras

# The Keras release the patch was written against; other 3.x releases are checked by name.
TESTED_KERAS = "3.15"

_patched = False


def patch_fit_for_multi_worker() -> None:
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
  if keras.version().split(".")[0] != TESTED_KERAS.split(".")[0]:
    raise RuntimeError(f"Multi-worker training adapts Keras {TESTED_KERAS}'s trainer; this is "
                       f"Keras {keras.version()}.")
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
