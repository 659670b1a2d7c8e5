"""Streaming tf.data input pipelines over the TFRecord shards the builders write.

Readers: `from_shards` (glob or list), `from_dataset_dir` (built folder), `from_tfds` (TFDS
name), all ending in `make_dataset`, configured by one `PipelineConfig`; `dataset_info` for
class names and counts; `image_dataset_from_directory` as a Keras drop-in for raw folders;
`load_splits` for the train/validation/test datasets of one `DataSource`, ready for `fit`.
"""

from petpipe.pipeline.config import PipelineConfig
from petpipe.pipeline.dataset_diff import DatasetDiff
from petpipe.pipeline.dataset_diff import diff_datasets
from petpipe.pipeline.folder_loader import image_dataset_from_directory
from petpipe.pipeline.input_pipeline import ShardSlice
from petpipe.pipeline.input_pipeline import make_dataset
from petpipe.pipeline.reading import DatasetInfo
from petpipe.pipeline.reading import dataset_info
from petpipe.pipeline.reading import from_dataset_dir
from petpipe.pipeline.reading import from_shards
from petpipe.pipeline.reading import from_tfds
from petpipe.pipeline.training_data import DataSource
from petpipe.pipeline.training_data import InputLayout
from petpipe.pipeline.training_data import TrainingData
from petpipe.pipeline.training_data import load as load_splits

__all__ = [
    "DataSource",
    "DatasetDiff",
    "DatasetInfo",
    "InputLayout",
    "PipelineConfig",
    "ShardSlice",
    "TrainingData",
    "dataset_info",
    "diff_datasets",
    "from_dataset_dir",
    "from_shards",
    "from_tfds",
    "image_dataset_from_directory",
    "load_splits",
    "make_dataset",
]
