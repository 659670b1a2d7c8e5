"""The TensorFlow Datasets internals this project relies on, imported here only.

TFDS's public API (`tfds.core.GeneratorBasedBuilder`, `tfds.features`, ...) has no hook for
these: the example writer that the builders replace to write byte-identical records, the
`tf.train.Example` proto it serializes, TFDS's lazy import of Apache Beam (so that local
builds never import Beam), the memory bound of TFDS's local shuffler, and whether
`tfds.disable_progress_bar()` was called. If a TFDS release moves them, this module is what
changes. Tested against tensorflow-datasets 4.9.10.
"""

import contextlib

from tensorflow_datasets.core import shuffle
from tensorflow_datasets.core.utils import tqdm_utils
from tensorflow_datasets.core import writer  # noqa: F401  (ExampleWriter)
from tensorflow_datasets.core.utils.lazy_imports_utils import apache_beam as beam  # noqa: F401
from tensorflow_datasets.proto import tf_example_pb2  # noqa: F401  (Example)


@contextlib.contextmanager
def shuffle_memory(max_bytes: int):
  """While in it, TFDS's local writer holds at most `max_bytes` of records before spilling
  them to its bucket files on disk (its own path for big splits); by default it holds up to
  1 GB, which on tiny records is ~1 KB a file. The records written are the same."""
  before = shuffle.MAX_MEM_BUFFER_SIZE
  shuffle.MAX_MEM_BUFFER_SIZE = max_bytes
  try:
    yield
  finally:
    shuffle.MAX_MEM_BUFFER_SIZE = before


def progress_bars_enabled() -> bool:
  """False after `tfds.disable_progress_bar()`: the build's own bars follow TFDS's."""
  return bool(getattr(tqdm_utils, "_active", True))
