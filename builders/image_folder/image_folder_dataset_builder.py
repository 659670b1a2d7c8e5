"""image_folder: any `root/<class>/**` folder (or a zip of one) as validated records.

    tfds build builders/image_folder --data_dir OUT \
      --config '{"name": "flowers", "root": "/data/flowers", "encoding": "raw", "image_size": 128}'

Also a pre-split root (`root/train/<class>`, `root/test/<class>`, ...) and a root whose
labels come from a CSV/JSONL label file (`"labels": "metadata.csv"`): see `layouts`.
"""

from __future__ import annotations


from absl import logging
from etils import epath
import tensorflow as tf

from petpipe.builders import folder_builder
from petpipe.builders import layouts
from petpipe.images import sources as sources_lib


def _layout(config) -> tuple[str, list[str]]:
  """(zip member prefix, class folders found) of the root."""
  if tf.io.gfile.isdir(config.root):
    return "", sources_lib.subfolders(config.root)
  if tf.io.gfile.exists(config.root):
    return sources_lib.zip_layout(config.root)
  raise FileNotFoundError(f"image_folder root does not exist: {config.root}")


def _special_layout(config):
  """The pre-split or label-file layout of the root, or None for plain class folders."""
  if config.root is None or not tf.io.gfile.exists(config.root):
    return None  # a missing root fails where plain class folders fail
  prefix, found = _layout(config)
  members = None
  if not tf.io.gfile.isdir(config.root):
    with sources_lib.open_zip(config.root) as zf:
      members = list(sources_lib.member_table(zf.namelist(), prefix).clean)
  layout = layouts.detect(config, prefix, found, members)
  if layout is not None and layout.split_folders and config.split_percent is not None:
    raise ValueError(
        f"split_percent cannot be used with {config.root}: its folders {sorted(layout.split_folders)} "
        f"are the splits. Received: split_percent={list(config.split_percent)}")
  return layout


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
    layout = self._layout()
    return list(layout.class_names) if layout else _class_dirs(self.builder_config)

  def _layout(self):
    # Once per builder: the label file is read once, and the class names stay fixed.
    if not hasattr(self, "_found_layout"):
      self._found_layout = _special_layout(self.builder_config)
    return self._found_layout

  def _source(self, dl_manager):
    config = self.builder_config
    if config.root is None:
      raise ValueError(
          "root is required for image_folder: the folder (or zip) of images, e.g. "
          '--config \'{"name": "mydata", "root": "/path/to/root"}\'. Received: root=None')
    layout = self._layout()
    if layout is not None:
      return self._special_source(config, layout)
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

  def _special_source(self, config, layout):
    if not layout.class_names:
      raise ValueError(f"No classes in {config.root}: expected <split>/<class>/<images> or labels.")
    source, label_of_dir = layouts.make_source(
        config, layout,
        lambda folders: sources_lib.FolderSource(config.root, folders, config.follow_links),
        lambda folders: sources_lib.ZipSource(config.root, folders, layout.prefix))
    if layout.split_folders:
      used = ", ".join(f"{split}={folder}" for split, folder in layouts.given_splits(layout.split_folders).items())
      # Printed, not only logged: the tfds command line hides INFO logs.
      message = f"Using the splits given by the folders of {config.root}: {used} (no re-splitting)"
      logging.info(message)
      if not getattr(self, "_told_splits", False):
        print(message, flush=True)
        self._told_splits = True
    return source, label_of_dir
