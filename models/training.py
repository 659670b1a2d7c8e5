"""The training loop: one `model.fit` for the whole run, resumable at any step.

Data-agnostic: it takes a function from (epoch seed, batches to skip) to that epoch's
batches (and an optional validation dataset), never a data source. Every random choice of
an epoch follows from (run seed, epoch): the input's shuffle seed and the model's random
layers. When the epoch's batch count is known, the epochs are read as one dataset (each
epoch's order from its own seed) by a single `fit` with `steps_per_epoch`, so Keras
callbacks that live across epochs (best checkpoint, early stopping, learning-rate
schedules, CSV logs, the caller's own) work unchanged.

Every `save_every` steps (default: every `save_seconds` of training) and after every epoch,
the weights, optimizer state, random layers' state, metric accumulators, epoch, step and
the state of Keras's stateful callbacks are saved atomically in `backup_dir`
(`checkpoint`). Running again rebuilds the interrupted epoch's input with the same seed,
skips the batches already trained on before decoding them, restores the accumulators and
finishes that epoch with a short `fit`, then trains the remaining epochs with one `fit`;
with deterministic ops it ends with exactly the weights and per-epoch losses of an
uninterrupted run. Input of unknown length (several workers, a tf.data service) is trained
one `fit` per epoch and saved at epoch ends only.

    history = training.fit_epochs(model, batches_for_seed, epochs=10, seed=0,
                                  backup_dir="out/backup", settings={"model": "cnn"})
    # run it again after an interruption: it continues from the last saved step
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Callable, Iterable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from petpipe.models import checkpoint
from petpipe.models import determinism

# Saved every this many seconds of training when no step count is given.
DEFAULT_SAVE_SECONDS = 120.0
# What Keras's stateful callbacks keep across epochs, restored on resume (their
# `on_train_begin` resets it).
_CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
    keras.callbacks.ModelCheckpoint: ("best",),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


def resume_state(backup_dir: str, settings: dict,
                 describe: Callable[[str], str] = lambda key: key) -> Optional[dict]:
  """The saved state of an interrupted run in `backup_dir`, or None to start afresh.

  Every key of `settings` must have the saved run's value; a "seed" key is compared with
  the seed the saved run used (so give it only when the user chose one).

  Raises:
    ValueError: the backup was written by a run with other `settings` (model, data,
      sizes...): continuing it would mix two runs. The message names each differing
      setting as `describe(key)` says, with both values.
  """
  state = checkpoint.load(backup_dir)
  if state is None:
    return None
  folder = os.path.dirname(backup_dir if "://" in backup_dir else os.path.abspath(backup_dir))
  check_settings(state, settings, folder, backup_dir, describe)
  return state


def check_settings(state: dict, settings: dict, folder: str, remove: str,
                   describe: Callable[[str], str] = lambda key: key) -> None:
  """Raises ValueError unless `state` (a run's saved state, found in `folder`) was written
  with `settings`, naming each setting that differs as `describe(key)` says, with both
  values; `remove` is what to delete to start over. Every key of `settings` is compared; a
  "seed" key with the seed the saved run used (so give it only when the user chose one)."""
  saved = dict(state.get("config") or {})
  if "seed" in settings:
    saved["seed"] = state.get("seed")
  mine = _plain(settings)
  differing = [key for key in sorted(mine) if saved.get(key) != mine[key]]
  if differing:
    parts = [f"{describe(key)} ({_short(mine[key])} now, {_short(saved.get(key))} there)"
             for key in differing]
    raise ValueError(f"{folder} holds a run with other settings: {'; '.join(parts)}. Use "
                     f"another output folder, or delete {remove} to start over.")


def _short(value, limit: int = 60) -> str:
  text = "not set" if value is None else json.dumps(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."


def new_seed() -> int:
  """A fresh run seed (kept in the backup, so a resumed run reuses it)."""
  return determinism.derive(time.time_ns())


def fit_epochs(
    model: keras.Model,
    train: Callable[..., tf.data.Dataset],
    *,
    epochs: int,
    seed: int,
    backup_dir: str,
    settings: dict,
    state: Optional[dict] = None,
    resume: bool = True,
    restore_from: Optional[str] = None,
    validation: Optional[tf.data.Dataset] = None,
    class_weight: Optional[dict] = None,
    callbacks: Iterable[keras.callbacks.Callback] = (),
    prepare: Callable[[tf.data.Dataset], tf.data.Dataset] = lambda dataset: dataset,
    after_epoch: Optional[Callable[[list], None]] = None,
    save_every: Optional[int] = None,
    save_seconds: float = DEFAULT_SAVE_SECONDS,
    verbose: Optional[int] = None,
) -> list[dict]:
  """Trains a compiled `model` up to `epochs`, continuing from `state` if given.

  Args:
    train: (epoch seed, skip) -> that epoch's training batches without its first `skip`
      batches (a function of the seed alone is accepted when nothing is skipped).
    seed: the run seed; each epoch's seed is derived from (seed, epoch).
    backup_dir: where the state goes (every `save_every` steps and after each epoch).
    settings: what a resumed run must share with this one (`resume_state` compares it),
      JSON-serialisable.
    state: `resume_state(backup_dir, settings)`'s result, if the caller already read it.
    resume: with no `state` given, continue from `backup_dir` when it holds a backup
      (a backup of other settings raises ValueError).
    restore_from: the backup `state` was read from, if not `backup_dir` (a worker of a
      multi-worker run resumes from the chief's backup and saves its own).
    callbacks: Keras callbacks, given to `fit` as they are; the state across epochs of
      `EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau` is kept for resuming.
    prepare: applied to the training batches (e.g. prefetching to a device).
    after_epoch: called with the history after each epoch is saved.
    save_every: save the state every this many steps within an epoch; None saves every
      `save_seconds` seconds; 0 only at epoch ends.
    verbose: Keras's verbosity; default a progress bar on a terminal, a line per epoch
      in a log.

  Returns:
    The history: per epoch, Keras's logs plus "epoch", "examples" (the training
    examples the epoch's steps consumed, counted by the model over all replicas),
    "seconds" and "images_per_second".
  """
  history, start, step = [], 0, 0
  if state is None and resume:
    state = resume_state(backup_dir, settings)
  if state:
    seed = int(state["seed"])  # a resumed run repeats the interrupted run's choices
    source = restore_from or backup_dir
    try:
      # Under the model's strategy, so restored variables are mirrored on every replica.
      with model.distribute_strategy.scope():
        checkpoint.restore(model, source, state)
    except (OSError, ValueError) as e:
      raise ValueError(f"cannot restore {source}; delete it to start over.") from e
    history, start, step = list(state["history"]), int(state["epoch"]), int(state.get("step", 0))
  if start >= epochs:
    return history
  if verbose is None:
    verbose = 1 if sys.stdout.isatty() else 2
  first = train(determinism.derive(seed, start))  # built once: a service job is made here
  steps = _known_length(first)
  if step and steps is None:
    step = 0  # cannot happen for a backup this function wrote; redo the epoch to be safe
  callbacks = list(callbacks)
  timer = EpochTimer()
  saver = _RunState(seed=seed, backup_dir=backup_dir, settings=_plain(settings),
                    history=history, steps=steps,
                    save_every=save_every if steps is not None else 0,
                    save_seconds=save_seconds, tracked=callbacks, timer=timer,
                    after_epoch=after_epoch, state=state if state else None)
  # The saver last: its `on_train_begin` restores what the others' reset, and it saves
  # after they have updated their state at the end of an epoch.
  all_callbacks = [timer, _Progress(epochs), *callbacks, saver]
  fit = dict(validation_data=validation, shuffle=False, class_weight=class_weight,
             callbacks=all_callbacks, verbose=verbose)
  if steps is None:
    # Unknown length: one `fit` per epoch, each epoch ended by its input running out.
    for epoch in range(start, epochs):
      batches = first if epoch == start else train(determinism.derive(seed, epoch))
      with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(prepare(batches), initial_epoch=epoch, epochs=epoch + 1, **fit)
      if model.stop_training:
        break
    return history
  if step:
    # The rest of the interrupted epoch: its batches after the `step` already trained on.
    saver.continue_at(step)
    rest = train(determinism.derive(seed, start), step)
    _build_metrics(model, rest)
    model.fit(prepare(rest), initial_epoch=start, epochs=start + 1,
              steps_per_epoch=steps - step, **fit)
    start += 1
    if model.stop_training or start >= epochs:
      return history
  # The remaining epochs as one dataset: each epoch's order from (seed, epoch).
  data = first if not step else train(determinism.derive(seed, start))
  for epoch in range(start + 1, epochs):
    data = data.concatenate(train(determinism.derive(seed, epoch)))
  model.fit(prepare(data), initial_epoch=start, epochs=epochs, steps_per_epoch=steps, **fit)
  return history


def class_weights(counts: Sequence[int]) -> dict[int, float]:
  """Inverse class frequency, scaled so a balanced split gets 1.0 for every class."""
  total, present = sum(counts), sum(1 for c in counts if c)
  return {i: (total / (present * c) if c else 1.0) for i, c in enumerate(counts)}


def examples_seen(model: keras.Model) -> int:
  """The examples the training steps consumed since the metrics were last reset.

  Keras weights its "loss" tracker (a mean) by each batch's size, so the tracker's count
  is exactly that, summed over the replicas (and workers) of a distributed run: what the
  model saw, not what the input was expected to hold. (A float32 count: exact up to 2**24
  examples per epoch.)
  """
  tracker = next(m for m in model.metrics if m.name == "loss")
  return int(round(float(keras.ops.convert_to_numpy(tracker.count))))


def save_model(model: keras.Model, path: str) -> None:
  """Saves atomically: readers see the old file or the new one (a full disk: OSError)."""
  checkpoint.write_file(path, model.save)


class CSVLogger(keras.callbacks.CSVLogger):
  """Keras's `CSVLogger`, also on `gs://`, `s3://` or `ram://`: Keras 3.15 asks its open file
  whether it is `.closed`, which a `tf.io.gfile.GFile` cannot answer (AttributeError)."""

  def _close(self):
    if self.csv_file is not None:
      self.csv_file.close()
      self.csv_file = None

  def on_train_begin(self, logs=None):
    self._close()
    super().on_train_begin(logs)

  def on_train_end(self, logs=None):
    self._close()
    super().on_train_end(logs)


class EpochTimer(keras.callbacks.Callback):
  """Seconds spent on the training batches of the last epoch (validation excluded), and
  the examples those batches held."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self.seconds, self.examples = time.perf_counter(), None, None

  def on_test_begin(self, logs=None):
    self._training_done()

  def on_epoch_end(self, epoch, logs=None):
    self._training_done()

  def _training_done(self):
    if self.seconds is None:
      self.seconds = time.perf_counter() - self._start
      # Before validation resets the metrics (under a multi-worker strategy every worker
      # reads it here together: the read sums over all of them).
      self.examples = examples_seen(self.model)


class _RunState(keras.callbacks.Callback):
  """Sets each epoch's random state, saves the run's state every few steps and after each
  epoch, keeps the history, and restores all of it when a run continues."""

  def __init__(self, *, seed, backup_dir, settings, history, steps, save_every, save_seconds,
               tracked, timer, after_epoch, state):
    super().__init__()
    self._seed, self._dir, self._settings = seed, backup_dir, settings
    self.history, self._steps, self._timer = history, steps, timer
    self._every, self._seconds = save_every, save_seconds
    self._tracked = [c for c in tracked if isinstance(c, tuple(_CALLBACK_STATE))]
    self._after_epoch = after_epoch
    self._callback_state = (state or {}).get("callbacks") or {}
    self._state = state
    self._offset = 0  # steps of the current epoch trained before this `fit`
    self._resuming = False
    self._epoch = 0

  def continue_at(self, step: int) -> None:
    """The next epoch begins at `step`, with the saved accumulators and random state."""
    self._offset, self._resuming = step, True

  def on_train_begin(self, logs=None):
    # Keras's callbacks reset their state here; what they had reached comes back.
    for index, callback in enumerate(self._tracked):
      for name, value in self._callback_state.get(_key(index, callback), {}).items():
        setattr(callback, name, value)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch, self._last_save = epoch, time.monotonic()
    if self._resuming:
      # After Keras reset the metrics: the interrupted epoch's sums and counts so far.
      for variable, value in zip(self.model.metrics_variables, self._state["metrics"],
                                 strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))
      for variable, value in zip(determinism.seed_states(self.model), self._state["seed_states"],
                                 strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))
      self._resuming = False
    else:
      self._offset = 0
      determinism.reseed_layers(self.model, self._seed, epoch)

  def on_train_batch_end(self, batch, logs=None):
    step = self._offset + batch + 1
    if self._steps is not None and step >= self._steps:
      return  # the epoch's end saves
    if self._every:
      due = step % self._every == 0
    elif self._every is None:
      due = time.monotonic() - self._last_save >= self._seconds
    else:
      due = False
    if due:
      self._save(self._epoch, step)

  def on_epoch_end(self, epoch, logs=None):
    timer = self._timer
    self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                         "examples": timer.examples, "seconds": timer.seconds,
                         "images_per_second": timer.examples / timer.seconds})
    self._offset = 0
    self._save(epoch + 1, 0)
    if self._after_epoch:
      self._after_epoch(self.history)

  def _save(self, epoch: int, step: int) -> None:
    self._callback_state = {
        _key(index, callback): {name: _plain_value(getattr(callback, name, None))
                                for name in _CALLBACK_STATE[_kind(callback)]}
        for index, callback in enumerate(self._tracked)}
    extra = {}
    if step:
      extra = {"metrics": [_plain_value(v) for v in self.model.metrics_variables],
               "seed_states": [_plain_value(v) for v in determinism.seed_states(self.model)]}
    checkpoint.save(self.model, self._dir, epoch, step, config=self._settings, seed=self._seed,
                    steps=self._steps, history=self.history, callbacks=self._callback_state,
                    **extra)
    self._last_save = time.monotonic()


def _kind(callback) -> type:
  return next(k for k in _CALLBACK_STATE if isinstance(callback, k))


def _key(index: int, callback) -> str:
  return f"{index}:{type(callback).__name__}"


def _plain_value(value):
  """A variable, numpy or Python number as JSON keeps it (inf and nan included)."""
  if value is None or isinstance(value, (int, str)):
    return value
  array = np.asarray(keras.ops.convert_to_numpy(value) if hasattr(value, "dtype") else value)
  return array.tolist()


def _build_metrics(model: keras.Model, dataset: tf.data.Dataset) -> None:
  """Creates the compiled metrics' variables (Keras otherwise creates them while tracing
  the first step, too late to restore their sums), from a batch of zeros shaped like
  `dataset`'s."""
  zeros = tf.nest.map_structure(
      lambda spec: tf.zeros([1 if d is None else d for d in spec.shape], spec.dtype),
      dataset.element_spec)
  x, y = zeros[0], zeros[1]
  with model.distribute_strategy.scope():
    model.compute_metrics(x, y, model(x, training=False), sample_weight=None)
  model.reset_metrics()


def _known_length(dataset: tf.data.Dataset) -> Optional[int]:
  count = int(dataset.cardinality())
  return count if count > 0 else None


class _Progress(keras.callbacks.ProgbarLogger):
  """Keras's progress bar, counting epochs out of the run's total (a resumed run's first
  `fit` trains the rest of one epoch)."""

  def __init__(self, epochs: int):
    super().__init__()
    self._epochs = epochs

  def set_params(self, params):
    super().set_params({**params, "epochs": self._epochs})


def _plain(settings: dict) -> dict:
  """`settings` as JSON gives it back (tuples as lists), so saved and live compare equal."""
  return json.loads(json.dumps(settings))
