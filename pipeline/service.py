"""Moving a pipeline's work onto tf.data service workers.

The service has no authentication and TensorFlow's servers listen on every
network interface: run dispatchers and workers only on a trusted network.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional

import tensorflow as tf

from petpipe.images import errors

PROTOCOL = "grpc"
# Seconds to wait for the dispatcher to accept a connection.
CONNECT_SECONDS = 10


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


def through_service(dataset: tf.data.Dataset, address: str, job_name: Optional[str] = None) -> tf.data.Dataset:
  """Runs `dataset` (reading, decoding, batching) on the service's workers.

  Dynamic sharding ("distributed_epoch"): workers take shard files from the
  dispatcher one at a time, so each example is produced exactly once per epoch
  however many workers there are. Consumers sharing `job_name` share one epoch.
  Each worker then holds part of the epoch, so `dataset` must not state the whole
  epoch's length: make it with `exact_cardinality=False` (the readers' option).
  """
  distributed = dataset.apply(
      tf.data.experimental.service.distribute(
          processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
          service=service_address(address),
          job_name=job_name,
      )
  )
  return distributed.prefetch(tf.data.AUTOTUNE)


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
