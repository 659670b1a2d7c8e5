"""How one split's input is divided among several training processes (workers).

The data side of multi-worker training: which files a worker reads and which tf.data
options its pipeline runs with. The workers' number and this worker's index come from the
caller (the distribution strategy), so this module knows nothing of the trainer.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

AutoShardPolicy = tf.data.experimental.AutoShardPolicy


def shard_policy(num_files: int, workers: int) -> AutoShardPolicy:
  """How the input of one split is divided among `workers` training processes.

  FILE when every worker gets at least one file: each reads only its own files, so no
  record is read twice. DATA otherwise: every worker reads every file and keeps every
  n-th batch, which wastes reads but is right with any number of files (with FILE, a
  worker without a file would have nothing to train on). OFF for a single worker.
  """
  if workers <= 1:
    return AutoShardPolicy.OFF
  return AutoShardPolicy.FILE if num_files >= workers else AutoShardPolicy.DATA


def shard_files(files: Sequence, worker_index: int, workers: int,
                policy: AutoShardPolicy) -> list:
  """The files this worker reads under `policy`: every n-th file for FILE, else all."""
  if policy == AutoShardPolicy.FILE:
    return list(files[worker_index::workers])
  return list(files)


def input_options(policy: AutoShardPolicy) -> tf.data.Options:
  """The tf.data options for a pipeline built on `shard_files(files, ..., policy)`.

  FILE switches tf.data's own rewrite OFF, because the files were already chosen: the
  rewrite would pick the same ones, but it fails on this project's pipelines, which zip a
  stream of per-batch seeds (a source it cannot shard) beside the record readers.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      AutoShardPolicy.OFF if policy == AutoShardPolicy.FILE else policy)
  return options
