"""A tf.data service for tests: a dispatcher and workers on 127.0.0.1, each started by the
project's own command (scripts/data_service.py) in its own process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "data_service.py")


def start(*args) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, SCRIPT, *args], stderr=subprocess.PIPE, text=True,
                          env=env)


def line_with(proc: subprocess.Popen, text: str) -> str:
  for line in proc.stderr:
    if text in line:
      return line.strip()
  raise RuntimeError(f"server exited ({proc.wait()}) before printing {text!r}")


@contextlib.contextmanager
def cluster(workers: int = 2, dispatcher_args=(), worker_args=None) -> Iterator[tuple]:
  """A dispatcher and `workers` workers, with extra command-line arguments (`worker_args`:
  a list for each worker); yields (the dispatcher's grpc:// address, the workers'
  processes), and kills them all on the way out."""
  dispatcher = start("dispatcher", "--port", "0", *dispatcher_args)
  procs = [dispatcher]
  try:
    address = line_with(dispatcher, "dispatcher listening on").rsplit(" ", 1)[1]
    procs += [start("worker", "--dispatcher", address, *(worker_args or [()] * workers)[i])
              for i in range(workers)]
    for worker in procs[1:]:
      line_with(worker, "worker registered")
    yield address, procs[1:]
  finally:
    for proc in procs:
      proc.kill()
      proc.wait()


@contextlib.contextmanager
def running(workers: int = 2) -> Iterator[str]:
  """A dispatcher and `workers` workers; yields the dispatcher's grpc:// address, and kills
  them all on the way out."""
  with cluster(workers) as (address, _):
    yield address
