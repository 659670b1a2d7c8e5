"""Seeds that make a run repeatable, including one resumed after an interruption.

Every source of randomness in an epoch is derived from (run seed, epoch): the input
pipeline's shuffle seed and the state of the model's random layers (augmentation,
dropout). A run resumed at epoch k therefore sees exactly what an uninterrupted run saw
from epoch k on; Keras checkpoints alone do not restore the random layers' state.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_SEED_STATE = "seed_generator_state"  # the variable name of a `keras.random.SeedGenerator`


def seed_everything(seed: int, deterministic: bool = False) -> None:
  """Seeds Python, NumPy and TensorFlow; `deterministic` also asks for deterministic ops
  (slower, and it turns XLA off)."""
  keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def derive(seed: int, *keys: int) -> int:
  """A well-mixed non-negative int32 seed from `seed` and `keys` (e.g. the epoch)."""
  state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)
  return int(state[0] >> 1)


def seed_states(model: keras.Model) -> list:
  """The state variables of the model's random layers (not in its saved weights)."""
  return [v for v in model.non_trainable_variables if v.name == _SEED_STATE]


def reseed_layers(model: keras.Model, seed: int, epoch: int) -> int:
  """Sets each random layer's seed state from (seed, epoch); returns how many it set."""
  states = seed_states(model)
  for index, state in enumerate(states):
    value = np.array([derive(seed, epoch, index), 0], dtype=state.dtype)
    state.assign(value)
  return len(states)
