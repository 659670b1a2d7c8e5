"""image_folder builder on its dummy_data: three classes, mixed extensions, a nested folder."""

import os

import tensorflow_datasets as tfds

from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder

_DUMMY = os.path.join(os.path.dirname(__file__), "dummy_data")


class ImageFolderTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = image_folder_dataset_builder.Builder
  SKIP_CHECKSUMS = True
  EXAMPLE_DIR = _DUMMY
  BUILDER_CONFIG_NAMES_TO_TEST = [
      FolderConfig(name="dummy_raw", root=_DUMMY, encoding="raw", image_size=16, channels=1, balance="none"),
      FolderConfig(name="dummy_jpeg", root=_DUMMY, encoding="jpeg", balance="none"),
  ]
  # 18 images (notes.txt files are ignored); the path hash puts one in test.
  SPLITS = {"train": 17, "test": 1}


if __name__ == "__main__":
  tfds.testing.test_main()
