"""A stalled training input ends the run with one Error line instead of hanging."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from petpipe.models import watchdog

# Three batches, then an input that never delivers again (a blocked read).
_STALLING_RUN = """
import time
import numpy as np
import keras
import tensorflow as tf
from petpipe.models import watchdog

def slow(i):
  if i >= 3:
    time.sleep(3600)
  return i

x = tf.data.Dataset.range(100).map(lambda i: tf.py_function(slow, [i], tf.int64))
batches = x.map(lambda i: (tf.fill([2, 4], tf.cast(i, tf.float32)), tf.zeros([2])))
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(batches, epochs=1, verbose=0,
          callbacks=[watchdog.InputWatchdog(timeout=3, hint="The state is kept in X.")])
print("fit returned")
"""


@pytest.mark.slow
def test_a_stalled_input_ends_the_run_with_one_error_line():
  start = time.monotonic()
  result = subprocess.run([sys.executable, "-c", _STALLING_RUN], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == watchdog.EXIT_CODE
  assert "fit returned" not in result.stdout
  errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert len(errors) == 1 and "the training input stalled" in errors[0]
  assert "The state is kept in X." in errors[0]
  assert time.monotonic() - start < 90


def test_timeout_must_be_positive():
  with pytest.raises(ValueError, match="Received: timeout=0"):
    watchdog.InputWatchdog(timeout=0)
