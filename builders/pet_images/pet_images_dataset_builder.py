"""pet_images: Microsoft's PetImages (Kaggle Cats and Dogs) as validated, balanced records.

    tfds build builders/pet_images --manual_dir DIR --data_dir OUT [--config gray100]

DIR holds `PetImages/Cat` + `PetImages/Dog`, or `Cat` + `Dog`, or the untouched
`kagglecatsanddogs_5340.zip` (read in place, never extracted).
"""

from __future__ import annotations

import os

from etils import epath
import tensorflow as tf

from petpipe.builders import folder_builder
from petpipe.images import sources as sources_lib

CLASS_DIRS = {"Cat": "cat", "Dog": "dog"}

_WHAT_TO_PUT = (
    "put kagglecatsanddogs_5340.zip there, or its PetImages/Cat and PetImages/Dog "
    "folders (Cat and Dog directly in it also work)"
)


def find_source(manual_dir: str):
  """The PetImages source in `manual_dir`, whichever of the three layouts it has."""
  manual_dir = os.fspath(manual_dir)
  if not tf.io.gfile.isdir(manual_dir):
    raise FileNotFoundError(f"--manual_dir {manual_dir} does not exist: {_WHAT_TO_PUT}.")
  for root in (os.path.join(manual_dir, "PetImages"), manual_dir):
    if all(tf.io.gfile.isdir(os.path.join(root, d)) for d in CLASS_DIRS):
      return sources_lib.FolderSource(root, list(CLASS_DIRS))
  for zip_path in sorted(tf.io.gfile.glob(os.path.join(manual_dir, "*.zip"))):
    prefix = sources_lib.find_zip_prefix(zip_path, list(CLASS_DIRS))
    if prefix is not None:
      return sources_lib.ZipSource(zip_path, list(CLASS_DIRS), prefix)
  raise FileNotFoundError(f"No PetImages found in {manual_dir}: {_WHAT_TO_PUT}.")


class Builder(folder_builder.FolderBuilder):
  """PetImages cats and dogs: label 0 = cat, 1 = dog."""

  # TFDS derives this folder (README.md, CITATIONS.bib) from the import name, which is not
  # where the file lies when the folders are installed under `petpipe`: say it.
  pkg_dir_path = epath.Path(__file__).parent

  BUILDER_CONFIGS = folder_builder.storage_configs("PetImages. ")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download kagglecatsanddogs_5340.zip (Microsoft Kaggle Cats and Dogs) and "
      f"pass its folder as --manual_dir: {_WHAT_TO_PUT}."
  )

  def _label_names(self) -> list[str]:
    return list(CLASS_DIRS.values())

  def _source(self, dl_manager):
    return find_source(dl_manager.manual_dir), dict(CLASS_DIRS)
