"""image_folder: any `root/<class>/**` folder (or a zip of one) as validated records.

    tfds build builders/image_folder --data_dir OUT \
      --config '{"name": "flowers", "root": "/data/flowers", "encoding": "raw", "image_size": 128}'
"""

from __future__ import annotations


from etils import epath
import tensorflow as tf

from petpipe.builders import folder_builder
from petpipe.builders import sources as sources_lib


def _layout(config) -> tuple[str, list[str]]:
  """(zip member prefix, class folders found) of the root."""
  if tf.io.gfile.isdir(config.root):
    return "", sources_lib.subfolders(config.root)
  if tf.io.gfile.exists(config.root):
    return sources_lib.zip_layout(config.root)
  raise FileNotFoundError(f"image_folder root does not exist: {config.root}")


def _class_dirs(config) -> list[str]:
  if config.root is None:
    return []
  if config.class_names:
    return list(config.class_names)
  return _layout(config)[1]


class Builder(folder_builder.FolderBuilder):
  """Any folder with one sub-folder per class; label names = folder names."""

  # TFDS derives this folder (README.md, CITATIONS.bib) from the import name, which is not
  # where the file lies when the folders are installed under `petpipe`: say it.
  pkg_dir_path = epath.Path(__file__).parent

  BUILDER_CONFIGS = folder_builder.storage_configs("Needs a root: pass it in --config. ")

  def _label_names(self) -> list[str]:
    return _class_dirs(self.builder_config)

  def _source(self, dl_manager):
    config = self.builder_config
    if config.root is None:
      raise ValueError(
          'image_folder needs a root folder: --config \'{"name": "mydata", "root": "/path/to/root"}\''
      )
    dirs = _class_dirs(config)
    if not dirs:
      raise ValueError(f"No class sub-folders in {config.root}: expected root/<class>/<images>.")
    prefix, found = _layout(config)
    missing = [d for d in dirs if d not in found]
    if missing:
      raise ValueError(f"class_names not found as class folders of {config.root}: {missing}; found: {found}")
    if tf.io.gfile.isdir(config.root):
      source = sources_lib.FolderSource(config.root, dirs, config.follow_links)
    else:
      source = sources_lib.ZipSource(config.root, dirs, prefix)
    return source, {d: d for d in dirs}
