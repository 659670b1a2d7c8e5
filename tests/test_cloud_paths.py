"""Data and outputs on any file system TensorFlow knows, with TensorFlow's in-memory `ram://`
standing in for `gs://` and `s3://` (it lives in this process only: every test writes its
own copy there)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import itertools
import shutil

import numpy as np
import pytest
import tensorflow as tf

from petpipe import pipeline
from petpipe.builders import folder_builder
from petpipe import sample_data
from petpipe.images import sources
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.models import checkpoint
from petpipe.models import plots
from petpipe.images import filesystems
from petpipe.pipeline import folder_lock
from petpipe.pipeline import verify
from tests.shards_fixture import BAD_FILES


_FOLDERS = itertools.count()


def fresh_ram_folder() -> str:
  """A `ram://` folder no other call of this process returned (`ram://` lives as long as the
  process: each test gets a folder of its own)."""
  return f"ram://pid{os.getpid()}-{next(_FOLDERS)}"


def to_ram(local: str) -> str:
  """A copy of the local folder or file under a fresh `ram://` path."""
  remote = f"{fresh_ram_folder()}/{os.path.basename(local)}"
  if os.path.isfile(local):
    tf.io.gfile.makedirs(os.path.dirname(remote))
    tf.io.gfile.copy(local, remote)
    return remote
  for folder, _, files in os.walk(local):
    target = remote + folder[len(local):].replace(os.sep, "/")
    tf.io.gfile.makedirs(target)
    for name in files:
      tf.io.gfile.copy(os.path.join(folder, name), f"{target}/{name}")
  return remote


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> str:
  """Sample PetImages with every kind of broken file the builders skip or repair."""
  folder = str(tmp_path_factory.mktemp("cloud_pictures"))
  return sample_data.write_sample_folder(os.path.join(folder, "pets"), per_class=4, min_size=16,
                                         max_size=32).root


def build(root: str, data_dir: str, name: str):
  config = FolderConfig(name=name, root=root, encoding="raw", image_size=8, balance="none",
                        split_percent=(50, 25, 25))
  builder = image_folder.Builder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def shard_hashes(builder) -> dict:
  files = sorted(tf.io.gfile.glob(os.path.join(builder.data_dir, "*.tfrecord*")))
  return {os.path.basename(f): hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}


def read_all(dataset_dir: str) -> list:
  """(label, pixels) of every example of every split, read with `from_dataset_dir`."""
  config = pipeline.PipelineConfig(image_size=8, channels=3, batch_size=4, seed=0)
  found = []
  for split in pipeline.dataset_info(dataset_dir).num_examples:
    for images, labels in pipeline.from_dataset_dir(dataset_dir, split, config, training=False):
      found += [(int(label), image.tobytes()) for image, label in zip(images.numpy(), labels.numpy())]
  return sorted(found)


@pytest.fixture(scope="module")
def local_build(pictures, tmp_path_factory):
  return build(pictures, str(tmp_path_factory.mktemp("cloud_out")), "local")


def test_image_folder_builds_from_a_ram_folder_as_from_the_local_one(pictures, local_build, tmp_path):
  remote = build(to_ram(pictures), str(tmp_path), "remote")
  assert shard_hashes(remote) == shard_hashes(local_build)
  assert folder_builder.read_manifest(remote.data_dir) == folder_builder.read_manifest(local_build.data_dir)
  reasons = {row["reason"].split(":")[0] for row in folder_builder.read_manifest(remote.data_dir)}
  assert {"empty", "truncated", "not_an_image"} <= reasons
  assert read_all(os.fspath(remote.data_dir)) == read_all(os.fspath(local_build.data_dir))


def test_image_folder_builds_from_a_zip_on_ram(pictures, local_build, tmp_path):
  # Zipped as macOS does: one top folder holding the class folders.
  archive = shutil.make_archive(str(tmp_path / "pets"), "zip", os.path.dirname(pictures),
                                os.path.basename(pictures))
  remote = build(to_ram(archive), str(tmp_path / "out"), "remote_zip")
  assert shard_hashes(remote) == shard_hashes(local_build)
  assert read_all(os.fspath(remote.data_dir)) == read_all(os.fspath(local_build.data_dir))


def test_verify_against_a_ram_folder_names_changed_and_missing_files(pictures, local_build):
  remote = to_ram(pictures)
  assert verify.changed_sources(os.fspath(local_build.data_dir), remote) == []
  stored = sorted(row["path"] for row in verify_rows(local_build))
  with tf.io.gfile.GFile(f"{remote}/{stored[0]}", "wb") as f:
    f.write(b"other bytes")
  tf.io.gfile.remove(f"{remote}/{stored[1]}")
  assert verify.changed_sources(os.fspath(local_build.data_dir), remote) == [
      (stored[0], "changed"), (stored[1], "missing")]


def verify_rows(builder) -> list:
  with tf.io.gfile.GFile(os.path.join(builder.data_dir, verify.FILES)) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_sources_on_ram_pickle_and_read_after_unpickling(pictures, tmp_path):
  archive = shutil.make_archive(str(tmp_path / "pets"), "zip", pictures)
  for source in (sources.FolderSource(to_ram(pictures), ["Cat", "Dog"]),
                 sources.ZipSource(to_ram(archive), ["Cat", "Dog"])):
    copy = pickle.loads(pickle.dumps(source))
    first = next(c for c in source.listing().candidates if c.is_image)
    assert [c.path for c in copy.listing().candidates] == [c.path for c in source.listing().candidates]
    assert copy.read(first.path) == source.read(first.path)
    assert copy.size(first.path) == len(copy.read(first.path))


def test_a_missing_ram_file_is_a_file_not_found_error():
  with pytest.raises(FileNotFoundError):
    filesystems.open_read(f"{fresh_ram_folder()}/nothing.jpg")
  with pytest.raises(FileNotFoundError):
    filesystems.stat(f"{fresh_ram_folder()}/nothing.jpg")


def collect(dataset):
  images, labels = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
  return np.concatenate(images), np.concatenate(labels)


def test_folder_loader_reads_a_ram_folder_as_the_local_one(bad_folder):
  remote = to_ram(bad_folder)
  kwargs = dict(image_size=(8, 8), seed=1, verbose=False)
  ours = pipeline.image_dataset_from_directory(remote, **kwargs)
  local = pipeline.image_dataset_from_directory(bad_folder, **kwargs)
  assert ours.class_names == local.class_names
  relative = lambda paths, root: [p[len(root):].replace(os.sep, "/") for p in paths]
  assert relative(ours.file_paths, remote) == relative(local.file_paths, bad_folder)
  got, expected = collect(ours), collect(local)
  np.testing.assert_array_equal(got[1], expected[1])
  np.testing.assert_array_equal(got[0], expected[0])


def test_folder_loader_skips_bad_ram_files_with_their_reason(bad_folder):
  remote = to_ram(bad_folder)
  ds = pipeline.image_dataset_from_directory(remote, image_size=8, seed=0, verbose=False)
  assert sorted(ds.skipped_files) == sorted(f"{remote}/{name}" for name in BAD_FILES)
  assert ds.skip_reasons[f"{remote}/Cat/empty.jpg"] == "empty: zero bytes"
  assert ds.skip_reasons[f"{remote}/Dog/cut_off.jpg"].startswith("truncated: ")


def test_training_state_and_pictures_write_to_ram():
  out = f"{fresh_ram_folder()}/run"
  checkpoint.write_json(f"{out}/metrics.json", {"accuracy": 0.5})
  with tf.io.gfile.GFile(f"{out}/metrics.json") as f:
    assert json.load(f) == {"accuracy": 0.5}
  checkpoint.write_file(f"{out}/model.bin", lambda local: open(local, "wb").write(b"weights"))
  with tf.io.gfile.GFile(f"{out}/model.bin", "rb") as f:
    assert f.read() == b"weights"
  assert sorted(tf.io.gfile.listdir(out)) == ["metrics.json", "model.bin"]  # no partial copies
  plots.curves([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}], f"{out}/curves.png")
  with tf.io.gfile.GFile(f"{out}/curves.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_lock_on_a_remote_folder_says_so(caplog):
  with folder_lock.exclusive(f"{fresh_ram_folder()}/.lock", "ram://x is being built"):
    pass
  assert "No lock on ram://" in caplog.text


@pytest.mark.slow
def test_a_run_trains_into_a_ram_folder_and_resumes_there(tmp_path):
  from petpipe import experiment
  from tests.test_train import OUTPUT_FILES, write_shards

  shards = write_shards(str(tmp_path / "tiny" / "1.0.0"))
  out = f"{fresh_ram_folder()}/out"
  run = lambda epochs: experiment.run(experiment.RunConfig(
      shards=shards, model="mlp", epochs=epochs, batch_size=8, seed=1, out=out))
  run(2)
  assert set(OUTPUT_FILES) <= set(tf.io.gfile.listdir(out))
  metrics = run(3)
  assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
  with tf.io.gfile.GFile(f"{out}/history.csv") as f:
    assert [line.split(",")[0] for line in f.read().splitlines()] == ["epoch", "0", "1", "2"]


def test_folder_loader_cache_builds_from_a_ram_folder(bad_folder, tmp_path):
  remote = to_ram(bad_folder)
  kwargs = dict(image_size=(8, 8), seed=1, verbose=False, shuffle=False)
  cached = pipeline.image_dataset_from_directory(remote, cache_dir=str(tmp_path), **kwargs)
  direct = pipeline.image_dataset_from_directory(remote, **kwargs)
  assert sorted(cached.skipped_files) == sorted(f"{remote}/{name}" for name in BAD_FILES)
  assert sorted(cached.file_paths) == sorted(direct.file_paths)


def test_pet_images_finds_its_folder_or_zip_on_ram(tmp_path):
  from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images

  folder = sample_data.write_sample_folder(str(tmp_path / "in"), per_class=2, min_size=16,
                                           max_size=24, anomalies=False).root
  found = pet_images.find_source(os.path.dirname(to_ram(folder)))
  assert isinstance(found, sources.FolderSource) and found.root.endswith("/PetImages")
  archive = shutil.make_archive(str(tmp_path / "zipped" / "pets"), "zip", os.path.dirname(folder),
                                "PetImages")
  found = pet_images.find_source(os.path.dirname(to_ram(archive)))
  assert isinstance(found, sources.ZipSource) and found.prefix == "PetImages/"
  assert len([c for c in found.listing().candidates if c.is_image]) == 4


@pytest.mark.slow
def test_train_on_a_ram_folder_counts_and_trains_as_on_the_local_one(clean_folder):
  from click.testing import CliRunner

  from petpipe.scripts import train

  remote = to_ram(clean_folder)
  out = f"{fresh_ram_folder()}/out"
  result = CliRunner().invoke(train.main, ["--folder", remote, "--model", "mlp", "--epochs", "1",
                                           "--image-size", "16", "--batch-size", "4", "--seed", "0",
                                           "--out", out])
  assert result.exit_code == 0, result.output
  with tf.io.gfile.GFile(f"{out}/metrics.json") as f:
    metrics = json.load(f)
  local = pipeline.image_dataset_from_directory(clean_folder, image_size=16, verbose=False)
  assert metrics["config"]["folder"] == remote and metrics["class_names"] == local.class_names
  assert sum(n for counts in metrics["counts"].values() for n in counts.values()) == len(
      local.file_paths)
