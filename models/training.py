"""The training loop: epochs of `model.fit`, resumable after Ctrl-C or kill -9.

Data-agnostic: it takes a function from an epoch seed to that epoch's batches (and an
optional validation dataset), never a data source. Every random choice of an epoch follows
from (run seed, epoch): the input's shuffle seed and the model's random layers. After each
epoch the weights, optimizer state and history are saved atomically in `backup_dir`
(`checkpoint`), so running again continues from the last finished epoch and, with
deterministic ops, ends with exactly the weights of an uninterrupted run.

    history = training.fit_epochs(model, batches_for_seed, epochs=10, seed=0,
                                  backup_dir="out/backup", settings={"model": "cnn"})
    # run it again after an interruption: it continues from the last finished epoch
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Callable, Iterable, Optional, Sequence

import keras
import tensorflow as tf

from petpipe.models import checkpoint
from petpipe.models import determinism


def resume_state(backup_dir: str, settings: dict) -> Optional[dict]:
  """The saved state of an interrupted run in `backup_dir`, or None to start afresh.

  Raises:
    ValueError: the backup was written by a run with other `settings` (model, data,
      sizes...): continuing it would mix two runs.
  """
  state = checkpoint.load(backup_dir)
  if state is None:
    return None
  saved = state.get("config")
  if saved != _plain(settings):
    differing = sorted(k for k in set(saved or {}) | set(settings)
                       if (saved or {}).get(k) != _plain(settings).get(k))
    raise ValueError(f"{os.path.dirname(os.path.abspath(backup_dir))} holds a run with other "
                     f"settings ({', '.join(differing)} differ); use another output folder "
                     f"or delete {backup_dir}.")
  return state


def new_seed() -> int:
  """A fresh run seed (kept in the backup, so a resumed run reuses it)."""
  return determinism.derive(time.time_ns())


def fit_epochs(
    model: keras.Model,
    train: Callable[[int], tf.data.Dataset],
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
    verbose: Optional[int] = None,
) -> list[dict]:
  """Trains a compiled `model` up to `epochs`, continuing from `state` if given.

  Args:
    train: epoch seed -> that epoch's training batches.
    seed: the run seed; each epoch's seed is derived from (seed, epoch).
    backup_dir: where the state after each epoch goes.
    settings: what a resumed run must share with this one (`resume_state` compares it),
      JSON-serialisable.
    state: `resume_state(backup_dir, settings)`'s result, if the caller already read it.
    resume: with no `state` given, continue from `backup_dir` when it holds a backup
      (a backup of other settings raises ValueError).
    restore_from: the backup `state` was read from, if not `backup_dir` (a worker of a
      multi-worker run resumes from the chief's backup and saves its own).
    prepare: applied to each epoch's batches (e.g. prefetching to a device).
    after_epoch: called with the history after each epoch is saved.
    verbose: Keras's verbosity; default a progress bar on a terminal, a line per epoch
      in a log.

  Returns:
    The history: per epoch, Keras's logs plus "epoch", "examples" (the training
    examples the epoch's steps consumed, counted by the model over all replicas),
    "seconds" and "images_per_second".
  """
  history, start = [], 0
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
      raise ValueError(f"cannot restore {source} ({_one_line(e)}); delete it to start over.") \
          from None
    history, start = list(state["history"]), int(state["epoch"])
  timer = EpochTimer()
  callbacks = [timer, _Progress(epochs), *callbacks]
  if verbose is None:
    verbose = 1 if sys.stdout.isatty() else 2
  for epoch in range(start, epochs):
    determinism.reseed_layers(model, seed, epoch)
    batches = prepare(train(determinism.derive(seed, epoch)))
    with warnings.catch_warnings():
      # Each `fit` trains one epoch: input of unknown length (a tf.data service, a
      # worker's share) ends it by running out, as expected.
      warnings.filterwarnings("ignore", message="Your input ran out of data")
      logs = model.fit(batches, validation_data=validation, initial_epoch=epoch,
                       epochs=epoch + 1, shuffle=False, class_weight=class_weight,
                       callbacks=callbacks, verbose=verbose).history
    history.append({"epoch": epoch + 1, **{k: float(v[-1]) for k, v in logs.items()},
                    "examples": timer.examples, "seconds": timer.seconds,
                    "images_per_second": timer.examples / timer.seconds})
    checkpoint.save(model, backup_dir, epoch + 1, config=_plain(settings), seed=seed,
                    history=history)
    if after_epoch:
      after_epoch(history)
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
  """Saves atomically: readers see the old file or the new one."""
  tmp = os.path.join(os.path.dirname(path), "tmp-" + os.path.basename(path))
  model.save(tmp)
  os.replace(tmp, path)


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


class _Progress(keras.callbacks.ProgbarLogger):
  """Keras's progress bar, counting epochs out of the run's total (each `fit` call
  trains one epoch)."""

  def __init__(self, epochs: int):
    super().__init__()
    self._epochs = epochs

  def set_params(self, params):
    super().set_params({**params, "epochs": self._epochs})


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def _plain(settings: dict) -> dict:
  """`settings` as JSON gives it back (tuples as lists), so saved and live compare equal."""
  return json.loads(json.dumps(settings))
