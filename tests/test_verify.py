"""Verifying shards: a flipped byte and a shard cut at a record boundary are both caught."""

import os
import shutil
import struct

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from click.testing import CliRunner

from petpipe import sample_data
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images
from petpipe.pipeline import verify

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("verify")
  sample_data.write_sample_folder(str(root), per_class=12, min_size=24, max_size=40, seed=2, anomalies=False)
  builder = pet_images.Builder(config="gray100", data_dir=str(root / "out"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  return builder.data_dir


@pytest.fixture
def copy(built, tmp_path):
  target = tmp_path / "ds"
  shutil.copytree(built, target)
  return str(target)


def _train_shard(dataset_dir):
  return sorted(tf.io.gfile.glob(os.path.join(dataset_dir, "*-train.tfrecord*")))[0]


def _cut_after_first_record(path):
  data = open(path, "rb").read()
  (length,) = struct.unpack("<Q", data[:8])
  open(path, "wb").write(data[: 16 + length])



def test_intact_dataset_verifies(built):
  verify.check_sizes(built)
  reports = verify.verify(built)
  assert sum(r.records for r in reports) == tfds.builder_from_directory(built).info.splits.total_num_examples


def test_one_flipped_byte_fails_naming_the_file(copy):
  shard = _train_shard(copy)
  data = bytearray(open(shard, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(shard, "wb").write(bytes(data))
  with pytest.raises(verify.CorruptDatasetError, match=os.path.basename(shard) + ".*corrupted record"):
    verify.verify(copy)


def test_shard_cut_at_a_record_boundary_fails_both_checks(copy):
  shard = _train_shard(copy)
  _cut_after_first_record(shard)
  with pytest.raises(verify.CorruptDatasetError, match="split train: .* shard.* hold"):
    verify.check_sizes(copy)
  with pytest.raises(verify.CorruptDatasetError, match=os.path.basename(shard) + ": 1 records, dataset_info.json says"):
    verify.verify(copy)


def test_verify_command_exit_codes(built, copy):
  import importlib.util

  spec = importlib.util.spec_from_file_location("verify_cmd", os.path.join(REPO, "scripts", "verify.py"))
  cmd = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(cmd)
  ok = CliRunner().invoke(cmd.main, [built])
  assert ok.exit_code == 0 and ok.output.startswith("OK:")
  os.remove(_train_shard(copy))
  bad = CliRunner().invoke(cmd.main, [copy])
  assert bad.exit_code == 1 and "shard files missing" in bad.output and "Traceback" not in bad.output
