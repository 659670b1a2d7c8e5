"""Moving a pipeline's work onto tf.data service workers, and surviving a lost one.

The service has no authentication and TensorFlow's servers listen on every
network interface: run dispatchers and workers only on a trusted network.

A lost worker (killed, its machine gone) is never dropped from a job by TensorFlow's
dispatcher (2.21): it logs the worker as lost after its worker timeout, but every job keeps
the worker's task, so an epoch read through the service would wait for that task's end
forever. `through_service` therefore ends an epoch itself: after the examples the epoch
holds, or, when a lost worker took examples with it, once no batch has come for
`lost_worker_timeout` seconds.
"""

from __future__ import annotations

import queue
import socket
import threading
from typing import Optional

from absl import logging

import tensorflow as tf

from petpipe.images import errors

PROTOCOL = "grpc"
# Seconds to wait for the dispatcher to accept a connection.
CONNECT_SECONDS = 10
# Seconds without a heartbeat (dispatcher) or a batch (trainer) after which a worker is lost.
WORKER_TIMEOUT_SECONDS = 30.0
# Seconds between a worker's heartbeats: well below the worker timeout.
HEARTBEAT_SECONDS = 5.0


def service_address(address: str) -> str:
  """`HOST:PORT` or `grpc://HOST:PORT` → `grpc://HOST:PORT`, checked."""
  if "://" in address:
    scheme = address.split("://", 1)[0]
    if scheme != PROTOCOL:
      raise ValueError(f"tf.data service addresses use grpc://. Received: data_service={address!r}")
  else:
    address = f"{PROTOCOL}://{address}"
  host, _, port = address.split("://", 1)[1].rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"expected grpc://HOST:PORT or HOST:PORT. Received: data_service={address!r}")
  return address


def check_dispatcher(address: str, timeout: float = CONNECT_SECONDS) -> None:
  """Raises ConnectionError when nothing answers at the dispatcher's address: TensorFlow
  would wait for it forever."""
  host, _, port = service_address(address).split("://", 1)[1].rpartition(":")
  try:
    socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
  except OSError as e:
    raise ConnectionError(
        f"no tf.data service dispatcher answers at {address} ({errors.one_line(e)}); start one "
        "with `petpipe data-service dispatcher`.") from None


def start_dispatcher(port: int = 0, work_dir: Optional[str] = None,
                     worker_timeout: float = WORKER_TIMEOUT_SECONDS):
  """A tf.data service dispatcher on `port` (0: any free one), which counts a worker silent
  for `worker_timeout` seconds as lost; with `work_dir`, fault tolerant across restarts."""
  milliseconds = max(1, int(worker_timeout * 1000))
  config = tf.data.experimental.service.DispatcherConfig(
      port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None,
      worker_timeout_ms=milliseconds,
      # Lost workers are looked for at every check (default: every 10 minutes).
      job_gc_check_interval_ms=milliseconds)
  return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0, host: str = "127.0.0.1",
                 heartbeat: float = HEARTBEAT_SECONDS):
  """A tf.data service worker registered with `dispatcher` (HOST:PORT or grpc://HOST:PORT),
  reachable at `host` on `port` (0: any free one), heartbeating every `heartbeat` seconds."""
  config = tf.data.experimental.service.WorkerConfig(
      dispatcher_address=service_address(dispatcher).split("://", 1)[1],
      worker_address=f"{host}:%port%", port=port,
      heartbeat_interval_ms=max(1, int(heartbeat * 1000)))
  return tf.data.experimental.service.WorkerServer(config)


def through_service(dataset: tf.data.Dataset, address: str, job_name: Optional[str] = None,
                    examples: Optional[int] = None, batch_size: Optional[int] = None,
                    lost_worker_timeout: Optional[float] = None) -> tf.data.Dataset:
  """Runs `dataset` (reading, decoding, batching) on the service's workers.

  Dynamic sharding ("distributed_epoch"): workers take shard files from the
  dispatcher one at a time, so each example is produced at most once per epoch, and
  exactly once when no worker is lost, however many workers there are. Consumers sharing
  `job_name` share one epoch. Each worker then holds part of the epoch, so `dataset` must
  not state the whole epoch's length: make it with `exact_cardinality=False` (the readers'
  option).

  With `examples` (the epoch's examples) and `batch_size`, the batches are re-cut to
  `batch_size` and the epoch ends after `examples` without waiting for a lost worker's
  task to end. With `lost_worker_timeout`, an epoch that has delivered a batch also ends
  once no batch comes for that many seconds: a worker lost mid-epoch took the rest of its
  files' examples with it (logged as a warning). An epoch that delivers nothing is never
  ended this way (the training watchdog reports it).
  """
  distributed = dataset.apply(
      tf.data.experimental.service.distribute(
          processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
          service=service_address(address),
          job_name=job_name,
      )
  )
  if examples is not None:
    # `take` stops without asking for one more element, which a lost task never gives.
    distributed = distributed.unbatch().take(examples).batch(batch_size)
  if lost_worker_timeout is not None:
    distributed = _ended_when_idle(distributed, lost_worker_timeout, examples)
  return distributed.prefetch(tf.data.AUTOTUNE)


_END = object()


def _ended_when_idle(stream: tf.data.Dataset, timeout: float,
                     examples: Optional[int]) -> tf.data.Dataset:
  """`stream`, ended once it has delivered something and then nothing for `timeout` s.

  A thread reads `stream` and hands its elements over a queue, so waiting can time out
  (an iterator blocked inside TensorFlow cannot be interrupted). A thread whose stream
  never ends (a lost worker's task) stays blocked for the life of the process.
  """

  def generate():
    handed = queue.Queue(maxsize=2)
    done = threading.Event()

    def hand(item) -> bool:
      while not done.is_set():  # the consumer may have ended the epoch
        try:
          handed.put(item, timeout=1.0)
          return True
        except queue.Full:
          continue
      return False

    def read():
      try:
        for element in stream:
          if not hand(element):
            return
        hand(_END)
      except Exception as e:  # noqa: BLE001  (re-raised by the consumer)
        hand(e)

    threading.Thread(target=read, daemon=True, name="service-reader").start()
    delivered = 0
    try:
      while True:
        try:
          element = handed.get(timeout=timeout if delivered else None)
        except queue.Empty:
          logging.warning(
              "No batch from the tf.data service for %.0f s after %d of %s examples: a "
              "worker was lost with the rest of its files; the epoch ends here.", timeout,
              delivered, "its" if examples is None else examples)
          return
        if element is _END:
          return
        if isinstance(element, Exception):
          raise element
        delivered += int(tf.shape(tf.nest.flatten(element)[0])[0])
        yield element
    finally:
      done.set()

  return tf.data.Dataset.from_generator(generate, output_signature=stream.element_spec)


# Seconds to wait for the first element from the service's workers.
WORKER_SECONDS = 20


def check_workers(address: str, timeout: float = WORKER_SECONDS) -> None:
  """Raises ConnectionError unless a worker of the service at `address` produces an element
  within `timeout` seconds: with no worker registered, reading through the service would
  wait forever, silently."""
  probe = tf.data.Dataset.range(1).apply(tf.data.experimental.service.distribute(
      processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
      service=service_address(address)))
  done = threading.Event()

  def take_one():
    for _ in probe.take(1):
      done.set()

  # A daemon thread: when no worker ever answers, it stays blocked, and must not keep the
  # process alive.
  threading.Thread(target=take_one, daemon=True).start()
  if not done.wait(timeout):
    raise ConnectionError(
        f"no tf.data service worker produced data within {timeout:.0f} s through the "
        f"dispatcher at {address}; start one with `petpipe data-service worker "
        f"--dispatcher {address.split('://', 1)[-1]}`.")
