"""A tf.data service for tests: a dispatcher and workers on 127.0.0.1, each started by the
project's own command (scripts/data_service.py) in its own process. A worker's process may be
started before its dispatcher's address is known (`park`): it imports TensorFlow meanwhile."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "data_service.py")


# The command's own first steps (TensorFlow started quietly, the service module imported),
# then its arguments read from stdin and the command run with them.
_PARKED = f"""
import runpy, sys
from petpipe import console
console.start_tensorflow()
from petpipe.pipeline import service
sys.argv = [{SCRIPT!r}, *sys.stdin.readline().split()]
runpy.run_path({SCRIPT!r}, run_name="__main__")
"""


def start(*args) -> subprocess.Popen:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, SCRIPT, *args], stderr=subprocess.PIPE, text=True,
                          env=env)


def park() -> subprocess.Popen:
  """A process of the command that imports what it needs, then waits for its arguments
  (`unpark`): started before they are known (a worker before its dispatcher's address),
  the server starts without waiting for TensorFlow's import."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, "-c", _PARKED], stdin=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)


def unpark(proc: subprocess.Popen, *args) -> subprocess.Popen:
  """Runs the command in the parked `proc` with `args` (none may hold a space)."""
  assert not any(" " in str(a) for a in args), args
  proc.stdin.write(" ".join(map(str, args)) + "\n")
  proc.stdin.close()
  return proc


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
    # The workers import TensorFlow while the dispatcher does.
    procs += [park() for _ in range(workers)]
    address = line_with(dispatcher, "dispatcher listening on").rsplit(" ", 1)[1]
    for i, worker in enumerate(procs[1:]):
      unpark(worker, "worker", "--dispatcher", address, *(worker_args or [()] * workers)[i])
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
