"""tf.data service: a dispatcher and two workers on 127.0.0.1, started by the project's command."""

import collections
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

import pipeline
from builders import sample_data
from builders.pet_images import pet_images_dataset_builder as pet_images
from pipeline import service

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "data_service.py")


def _start(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.Popen([sys.executable, SCRIPT, *args], stderr=subprocess.PIPE, text=True, env=env)


def _line_with(proc, text):
  for line in proc.stderr:
    if text in line:
      return line.strip()
  raise RuntimeError(f"server exited ({proc.wait()}) before printing {text!r}")


@pytest.fixture(scope="module")
def servers():
  dispatcher = _start("dispatcher", "--port", "0")
  address = _line_with(dispatcher, "dispatcher listening on").rsplit(" ", 1)[1]
  workers = [_start("worker", "--dispatcher", address) for _ in range(2)]
  procs = [dispatcher, *workers]
  try:
    for w in workers:
      _line_with(w, "worker registered")
    yield address
  finally:
    for p in procs:
      p.kill()
      p.wait()


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("svc")
  sample_data.write_sample_folder(str(root), per_class=30, min_size=24, max_size=40, seed=9, anomalies=False)
  builder = pet_images.Builder(config="original", data_dir=str(root / "out"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  return builder.data_dir


def _multiset(ds):
  seen = collections.Counter()
  for images, labels in ds.as_numpy_iterator():
    for image, label in zip(images, labels):
      seen[(image.tobytes(), int(label))] += 1
  return seen


def test_address_forms():
  assert service.service_address("127.0.0.1:5050") == "grpc://127.0.0.1:5050"
  with pytest.raises(ValueError, match="grpc://"):
    service.service_address("http://127.0.0.1:5050")


@pytest.mark.slow
def test_one_epoch_through_two_workers_is_the_local_multiset(servers, dataset_dir):
  config = pipeline.PipelineConfig(image_size=(32, 32), channels=1, batch_size=8, normalize="none", seed=3)
  local = _multiset(pipeline.from_dataset_dir(dataset_dir, "train", config, training=True))
  remote = pipeline.from_dataset_dir(dataset_dir, "train", config, training=True)
  through = _multiset(service.through_service(remote, servers))
  assert sum(local.values()) == tfds.builder_from_directory(dataset_dir).info.splits["train"].num_examples
  assert through == local
