"""Byte-identical records across processes, for our builders only.

A `tf.train.Example` keeps its features in a protobuf map, and protobuf writes
map entries in an order that can differ from one process to the next. TFDS
serialises with plain `SerializeToString()`, so two builds of the same input
in two processes could write different bytes.

`StableExampleWriter` rewrites each record with its map entries in sorted key
order just before it is written. A builder opts in by returning it from
`DatasetBuilder._example_writer()`, the hook TFDS provides for custom writers;
TFDS's `ExampleSerializer` and every other dataset are left alone. The writer is
pickled to Beam workers with the rest of TFDS's `BeamWriter`, so Beam builds
write sorted records too.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from petpipe.builders.tfds_compat import tf_example_pb2
from petpipe.builders.tfds_compat import writer as writer_lib


def deterministic_bytes(serialized: bytes) -> bytes:
  """The same `tf.train.Example`, serialized with map entries in sorted key order."""
  return tf_example_pb2.Example.FromString(serialized).SerializeToString(deterministic=True)


class StableExampleWriter(writer_lib.ExampleWriter):
  """TFDS's example writer, writing every record in its deterministic serialization."""

  def write(self, path, examples: Iterable[tuple]):
    return super().write(path, _stable(examples))


def _stable(examples: Iterable[tuple]) -> Iterator[tuple]:
  for key, serialized in examples:
    yield key, deterministic_bytes(serialized)
