"""Byte-identical records across processes.

A `tf.train.Example` keeps its features in a protobuf map, and protobuf writes
map entries in an order that can differ from one process to the next. TFDS
serialises with plain `SerializeToString()`, so two builds of the same input
in two processes could write different bytes. Importing this module makes
TFDS's example serializer write maps in sorted key order.
"""

from tensorflow_datasets.core import example_serializer


def _serialize_example(self, example):
  return self.get_tf_example(example).SerializeToString(deterministic=True)


example_serializer.ExampleSerializer.serialize_example = _serialize_example
