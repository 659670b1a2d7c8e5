"""Run as a script: `petpipe train ARGS...` that interrupts itself at an exact step.

    python tests/train_interrupted.py EPOCH BATCH KILL|INT ARGS...

Right after the model trains batch BATCH of epoch EPOCH (both counted from 0, the batch
within the `fit` that trains that epoch), the process sends itself SIGKILL (`kill -9`) or
SIGINT (Ctrl-C). The run's own callbacks save after the caller's ones, so that step is
never saved: the state on disk is the last one saved before it, whatever the machine's
speed. A killed run resumed with the same command continues from there.
"""

from __future__ import annotations

import os
import signal
import sys

import keras

from petpipe import experiment
from petpipe.scripts import train


class InterruptAt(keras.callbacks.Callback):
  """Sends `signum` to this process after batch `batch` of epoch `epoch`."""

  def __init__(self, epoch: int, batch: int, signum: int):
    super().__init__()
    self._at, self._signum, self._epoch = (epoch, batch), signum, None

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    if (self._epoch, batch) == self._at:
      os.kill(os.getpid(), self._signum)


def main(argv: list[str]) -> None:
  epoch, batch, name, *args = argv
  # Ctrl-C in a terminal raises KeyboardInterrupt. A process started from a background job
  # of a non-interactive shell inherits SIGINT ignored (POSIX), and Python then leaves it
  # ignored: restore the terminal's behaviour, whoever started the tests.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  interrupt = InterruptAt(int(epoch), int(batch), {"KILL": signal.SIGKILL, "INT": signal.SIGINT}[name])
  run = experiment.run

  def run_interrupted(config, where=None, distribution=None, callbacks=()):
    return run(config, where, distribution, callbacks=[*callbacks, interrupt])

  experiment.run = run_interrupted
  train.main(args, prog_name="train")


if __name__ == "__main__":
  main(sys.argv[1:])
