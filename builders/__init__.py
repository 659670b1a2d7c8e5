"""TFDS builders that turn image folders into validated, balanced, sharded TFRecords.

Importing this package registers `pet_images` and `image_folder` with TFDS, so that
`tfds build pet_images --imports petpipe.builders ...` and `tfds.builder("pet_images/gray100",
data_dir=...)` find them from any folder.
"""

from petpipe.builders.image_folder import image_folder_dataset_builder  # noqa: F401  (registers)
from petpipe.builders.pet_images import pet_images_dataset_builder  # noqa: F401  (registers)
