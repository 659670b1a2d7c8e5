"""Training never hangs silently: a callback that ends the run when its input stalls.

A tf.data iterator blocked inside TensorFlow (a tf.data service worker that died, a hung
network file system) cannot be interrupted from Python: the main thread never returns to
the interpreter. So a watcher thread ends the process itself, after one `Error:` line, when
no batch has arrived for `timeout` seconds. The training state on disk is the last one
saved (every few steps and every epoch), so running the same command continues from it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

import keras

DEFAULT_TIMEOUT = 120.0
EXIT_CODE = 1


class InputWatchdog(keras.callbacks.Callback):
  """Ends the process with `EXIT_CODE` when no training or validation batch has finished
  for `timeout` seconds.

  Args:
    timeout: seconds without a finished batch that count as a stall.
    hint: a sentence appended to the error (e.g. where the saved state is).
  """

  def __init__(self, timeout: float = DEFAULT_TIMEOUT, hint: str = ""):
    super().__init__()
    if timeout <= 0:
      raise ValueError(f"timeout must be positive. Received: timeout={timeout!r}")
    self.timeout = float(timeout)
    self.hint = hint
    self._last = time.monotonic()
    self._stop: Optional[threading.Event] = None

  def on_train_begin(self, logs=None):
    self._beat()
    self._stop = threading.Event()
    threading.Thread(target=self._watch, args=(self._stop,), daemon=True).start()

  def on_train_end(self, logs=None):
    if self._stop:
      self._stop.set()

  def on_train_batch_end(self, batch, logs=None):
    self._beat()

  def on_test_batch_end(self, batch, logs=None):
    self._beat()

  def on_epoch_begin(self, epoch, logs=None):
    # The first batch of an epoch may wait for a new iterator (a shuffle buffer filling).
    self._beat()

  def _beat(self):
    self._last = time.monotonic()

  def _watch(self, stop: threading.Event):
    while not stop.wait(min(1.0, self.timeout / 4)):
      idle = time.monotonic() - self._last
      if idle > self.timeout:
        sys.stdout.flush()
        sys.stderr.write(f"\nError: no batch for {idle:.0f} s: the training input stalled "
                         f"(a lost tf.data service worker, a hung file system?). {self.hint}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)  # the main thread is blocked inside TensorFlow: end the process
