"""GPU-dependent settings follow the flags, with only the device query mocked."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf

from petpipe.models import accelerator

FAKE_GPU = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")


@pytest.fixture
def gpus(monkeypatch):
  """Sets the GPUs `tf.config.list_physical_devices("GPU")` reports."""
  real = tf.config.list_physical_devices

  def use(devices):
    monkeypatch.setattr(
        tf.config, "list_physical_devices",
        lambda kind=None: list(devices) if kind == "GPU" else real(kind),
    )
  return use


def test_auto_is_off_on_a_cpu_only_machine(gpus):
  gpus([])
  settings = accelerator.choose()
  assert settings == accelerator.AcceleratorSettings(
      gpus=0, mixed_precision=False, jit_compile=False, steps_per_execution=1, prefetch_device=None)
  assert settings.policy == "float32"


def test_auto_is_on_when_a_gpu_is_visible(gpus):
  gpus([FAKE_GPU])
  settings = accelerator.choose()
  assert settings.gpus == 1
  assert settings.mixed_precision and settings.jit_compile
  assert settings.policy == "mixed_float16"
  assert settings.steps_per_execution == accelerator.GPU_STEPS_PER_EXECUTION
  assert settings.prefetch_device == "/gpu:0"


@pytest.mark.parametrize("devices", [[], [FAKE_GPU]])
def test_on_and_off_override_the_device(gpus, devices):
  gpus(devices)
  forced_on = accelerator.choose(mixed_precision="on", jit_compile="on", steps_per_execution=4)
  forced_off = accelerator.choose(mixed_precision="off", jit_compile="off", steps_per_execution=1)
  flags = lambda s: (s.mixed_precision, s.jit_compile, s.steps_per_execution)
  assert flags(forced_on) == (True, True, 4)
  assert flags(forced_off) == (False, False, 1)


def test_mixed_precision_and_xla_are_independent(gpus):
  gpus([FAKE_GPU])
  settings = accelerator.choose(mixed_precision="off")
  assert not settings.mixed_precision and settings.jit_compile


@pytest.mark.parametrize("kwargs", [{"mixed_precision": "yes"}, {"jit_compile": True},
                                    {"steps_per_execution": 0}, {"steps_per_execution": "many"}])
def test_bad_flags_fail_with_the_received_value(gpus, kwargs):
  gpus([])
  with pytest.raises(ValueError, match="Received"):
    accelerator.choose(**kwargs)


def test_apply_policy_sets_the_global_keras_policy(gpus):
  gpus([FAKE_GPU])
  try:
    accelerator.apply_policy(accelerator.choose())
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    accelerator.apply_policy(accelerator.choose(mixed_precision="off"))
    assert keras.mixed_precision.global_policy().name == "float32"
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_no_device_prefetch_without_a_gpu(gpus):
  gpus([])
  dataset = tf.data.Dataset.range(3)
  assert accelerator.prefetch(dataset, accelerator.choose()) is dataset
