"""Which speed-ups a run uses: mixed precision, XLA, steps per execution, device prefetch.

Each setting is "auto", "on" or "off"; "auto" means on when a GPU is visible. The choice
is a pure function of the flags and the device query, so it can be tested by mocking
`tf.config.list_physical_devices` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import keras
import tensorflow as tf

FLAGS = ("auto", "on", "off")

# Several steps per call amortise the per-step dispatch that dominates small models on
# an accelerator; on a CPU the step itself dominates.
GPU_STEPS_PER_EXECUTION = 8
MIXED_POLICY = "mixed_float16"


@dataclasses.dataclass(frozen=True)
class AcceleratorSettings:
  """What `choose` decided.

  Attributes:
    gpus: number of visible GPUs.
    mixed_precision: compute in float16, keep variables (and the output layer) in float32.
    jit_compile: compile the train step with XLA.
    steps_per_execution: train steps per compiled call.
    prefetch_device: device batches are prefetched to, or None to leave them on the host.
  """

  gpus: int = 0
  mixed_precision: bool = False
  jit_compile: bool = False
  steps_per_execution: int = 1
  prefetch_device: Optional[str] = None

  @property
  def policy(self) -> str:
    return MIXED_POLICY if self.mixed_precision else "float32"


def visible_gpus() -> list:
  return tf.config.list_physical_devices("GPU")


def _resolve(flag: str, name: str, has_gpu: bool) -> bool:
  if flag not in FLAGS:
    raise ValueError(f"{name} must be one of {', '.join(FLAGS)}. Received: {name}={flag!r}")
  return has_gpu if flag == "auto" else flag == "on"


def choose(
    mixed_precision: str = "auto",
    jit_compile: str = "auto",
    steps_per_execution: Union[int, str, None] = "auto",
) -> AcceleratorSettings:
  """Settings for this machine; "auto" (or None steps) follows the visible GPUs."""
  gpus = len(visible_gpus())
  has_gpu = gpus > 0
  if steps_per_execution in (None, "auto"):
    steps = GPU_STEPS_PER_EXECUTION if has_gpu else 1
  elif isinstance(steps_per_execution, int) and steps_per_execution >= 1:
    steps = steps_per_execution
  else:
    raise ValueError(
        "steps_per_execution must be a positive int or 'auto'. "
        f"Received: steps_per_execution={steps_per_execution!r}"
    )
  return AcceleratorSettings(
      gpus=gpus,
      mixed_precision=_resolve(mixed_precision, "mixed_precision", has_gpu),
      jit_compile=_resolve(jit_compile, "jit_compile", has_gpu),
      steps_per_execution=steps,
      prefetch_device="/gpu:0" if has_gpu else None,
  )


def apply_policy(settings: AcceleratorSettings) -> None:
  """Sets the global Keras dtype policy; call before building the model."""
  keras.mixed_precision.set_global_policy(settings.policy)


def prefetch(dataset: tf.data.Dataset, settings: AcceleratorSettings) -> tf.data.Dataset:
  """Copies batches to the accelerator ahead of the step (must be the last transformation)."""
  if settings.prefetch_device is None:
    return dataset
  return dataset.apply(tf.data.experimental.prefetch_to_device(settings.prefetch_device))
