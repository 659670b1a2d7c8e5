"""The TensorFlow Datasets internals this project relies on, imported here only.

TFDS's public API (`tfds.core.GeneratorBasedBuilder`, `tfds.features`, ...) has no hook for
these: the example writer that the builders replace to write byte-identical records, the
`tf.train.Example` proto it serializes, and TFDS's lazy import of Apache Beam (so that local
builds never import Beam). If a TFDS release moves them, this module is what changes.
Tested against tensorflow-datasets 4.9.10.
"""

from tensorflow_datasets.core import writer  # noqa: F401  (ExampleWriter)
from tensorflow_datasets.core.utils.lazy_imports_utils import apache_beam as beam  # noqa: F401
from tensorflow_datasets.proto import tf_example_pb2  # noqa: F401  (Example)
