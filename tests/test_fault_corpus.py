"""A folder holding every kind of bad or unusual file builds without a crash or a silent loss."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import fault_corpus
from petpipe.builders import folder_builder
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("corpus") / "root"
  faults = fault_corpus.write_fault_corpus(str(root), good_per_class=10, copies=3, seed=4)
  config = FolderConfig(name="corpus", root=str(root), balance="none", split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=config, data_dir=str(root.parent / "out"))
  builder.download_and_prepare()
  return faults, builder


def test_every_kind_appears_at_least_three_times(built):
  faults, _ = built
  kinds = [f.kind for f in faults]
  for kind in set(kinds) - {"good", "odd_name"}:
    assert kinds.count(kind) >= 3, kind


def test_every_bad_file_has_its_specific_reason_and_no_good_file_is_dropped(built, capfd):
  faults, builder = built
  rows = {r["path"]: r for r in folder_builder.read_manifest(builder.data_dir)}
  stored = {ex["image/filename"].decode() for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
  for fault in faults:
    if fault.expected == "kept":
      assert fault.path in stored and fault.path not in rows, fault
    else:
      assert rows[fault.path]["status"] == fault.expected, (fault, rows[fault.path])
      assert rows[fault.path]["reason"].startswith(fault.reason), (fault, rows[fault.path])
      assert (fault.path in stored) == (fault.expected in ("transcoded", "repaired")), fault
  assert len(stored) == sum(f.expected in ("kept", "transcoded", "repaired") for f in faults)


def test_every_stored_example_decodes_with_the_training_decoder_without_warnings(built, capfd):
  _, builder = built
  files = tf.io.gfile.glob(os.path.join(builder.data_dir, "*.tfrecord*"))
  capfd.readouterr()
  count = 0
  for record in tf.data.TFRecordDataset(files):
    image = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})["image"]
    decoded = tf.io.decode_jpeg(image, channels=3)
    assert decoded.shape[0] >= 8 and decoded.shape[1] >= 8
    count += 1
  assert count == builder.info.splits["train"].num_examples
  assert "Corrupt JPEG" not in capfd.readouterr().err


def test_exif_orientation_is_ignored_like_tensorflow_and_keras(built):
  faults, builder = built
  root = builder.builder_config.root
  rotated = sorted(f.path for f in faults if f.kind == "exif_rotated")
  stored = {name: ex["image"] for ex in tfds.as_numpy(builder.as_dataset(split="train"))
            if (name := ex["image/filename"].decode()) in rotated}
  assert sorted(stored) == rotated and len(rotated) == 3
  for path, image in stored.items():
    with Image.open(os.path.join(root, path)) as original:
      assert original.getexif()[0x0112] == 6  # the file asks to be shown turned by 90°
      in_file_order = np.asarray(original.convert("RGB"))  # Pillow without exif_transpose
    assert image.shape == in_file_order.shape == (40, 48, 3)  # not the displayed 48x40
    assert np.abs(image.astype(int) - in_file_order).mean() < 1.5, path
