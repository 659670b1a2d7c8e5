"""Moving a pipeline's work onto tf.data service workers.

The service has no authentication and TensorFlow's servers listen on every
network interface: run dispatchers and workers only on a trusted network.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

PROTOCOL = "grpc"


def service_address(address: str) -> str:
  """`HOST:PORT` or `grpc://HOST:PORT` → `grpc://HOST:PORT`."""
  if "://" in address:
    scheme = address.split("://", 1)[0]
    if scheme != PROTOCOL:
      raise ValueError(f"tf.data service addresses use grpc://. Received: data_service={address!r}")
    return address
  return f"{PROTOCOL}://{address}"


def through_service(dataset: tf.data.Dataset, address: str, job_name: Optional[str] = None) -> tf.data.Dataset:
  """Runs `dataset` (reading, decoding, batching) on the service's workers.

  Dynamic sharding ("distributed_epoch"): workers take shard files from the
  dispatcher one at a time, so each example is produced exactly once per epoch
  however many workers there are. Consumers sharing `job_name` share one epoch.
  """
  distributed = dataset.apply(
      tf.data.experimental.service.distribute(
          processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
          service=service_address(address),
          job_name=job_name,
      )
  )
  return distributed.prefetch(tf.data.AUTOTUNE)
