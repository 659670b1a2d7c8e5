"""pet_images builder on its dummy_data (5 good images per class plus every anomaly kind)."""

import os

import tensorflow_datasets as tfds

from petpipe.builders.pet_images import pet_images_dataset_builder


class PetImagesTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = pet_images_dataset_builder.Builder
  SKIP_CHECKSUMS = True
  EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "dummy_data")
  # Balanced per split; the anomalies that are skipped or ignored never count.
  SPLITS = {"train": 18, "validation": 2, "test": 2}


if __name__ == "__main__":
  tfds.testing.test_main()
