"""Streaming tf.data input pipelines over the TFRecord shards the builders write.

Readers: `from_shards` (glob or list), `from_dataset_dir` (built folder), `from_tfds` (TFDS
name), all ending in `make_dataset`, configured by one `PipelineConfig`; `dataset_info` for
class names and counts; `image_dataset_from_directory` as a Keras drop-in for raw folders.
"""

from petpipe.pipeline.config import PipelineConfig
from petpipe.pipeline.folder_loader import image_dataset_from_directory
from petpipe.pipeline.input_pipeline import ShardSlice
from petpipe.pipeline.input_pipeline import make_dataset
from petpipe.pipeline.reading import DatasetInfo
from petpipe.pipeline.reading import dataset_info
from petpipe.pipeline.reading import from_dataset_dir
from petpipe.pipeline.reading import from_shards
from petpipe.pipeline.reading import from_tfds

__all__ = [
    "DatasetInfo",
    "PipelineConfig",
    "ShardSlice",
    "dataset_info",
    "from_dataset_dir",
    "from_shards",
    "from_tfds",
    "image_dataset_from_directory",
    "make_dataset",
]
