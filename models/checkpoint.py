"""The training state kept during a run, so an interrupted run can continue.

Every few steps and after every epoch the weights (with the optimizer's state) go to a new
file named after the epoch and step, then `state.json` is replaced to point at it; only
then are older weight files removed. Both steps are atomic renames, so a kill -9 at any
moment leaves a consistent pair on disk: the last save, or the one before it.

(`keras.callbacks.BackupAndRestore` writes its weights and epoch number in place, one
after the other, and does not keep the per-epoch history or the random layers' state.)
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import keras

STATE = "state.json"
_WEIGHTS = "epoch-{epoch:04d}-step-{step:08d}.weights.h5"


def write_json(path: str, value: Any) -> None:
  """Writes JSON to `path` atomically: readers see the old file or the new one."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def load(directory: str) -> Optional[dict]:
  """The saved state (with "epoch", "weights" and whatever `save` was given), or None."""
  path = os.path.join(directory, STATE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def save(model: keras.Model, directory: str, epoch: int, step: int = 0, **state: Any) -> None:
  """Records that `epoch` epochs and `step` steps of the next one are done, with the
  model's weights at that point."""
  os.makedirs(directory, exist_ok=True)
  weights = _WEIGHTS.format(epoch=epoch, step=step)
  tmp = os.path.join(directory, f"tmp-{weights}")
  model.save_weights(tmp)
  os.replace(tmp, os.path.join(directory, weights))
  write_json(os.path.join(directory, STATE),
             {**state, "epoch": epoch, "step": step, "weights": weights})
  for name in os.listdir(directory):
    if name.endswith(".weights.h5") and name != weights:
      os.remove(os.path.join(directory, name))


def restore(model: keras.Model, directory: str, state: dict) -> None:
  """Loads the weights and optimizer state `state` points at into a compiled `model`."""
  if model.optimizer is not None and not model.optimizer.built:
    model.optimizer.build(model.trainable_variables)
  model.load_weights(os.path.join(directory, state["weights"]))
