"""tf.data service: a dispatcher and two workers on 127.0.0.1, started by the project's command."""

import collections

import pytest
import tensorflow_datasets as tfds

from petpipe import pipeline
from petpipe import sample_data
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images
from petpipe.pipeline import service
from tests import data_service_servers


@pytest.fixture(scope="module")
def servers():
  with data_service_servers.running(workers=2) as address:
    yield address


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
  # Split among the service's workers: no whole-epoch length stated.
  remote = pipeline.from_dataset_dir(dataset_dir, "train", config, training=True,
                                     exact_cardinality=False)
  through = _multiset(service.through_service(remote, servers))
  assert sum(local.values()) == tfds.builder_from_directory(dataset_dir).info.splits["train"].num_examples
  assert through == local


@pytest.mark.slow
def test_worker_check_passes_with_a_worker_registered(servers):
  service.check_workers(servers, timeout=30)


@pytest.mark.slow
def test_worker_check_fails_within_its_timeout_when_no_worker_is_registered():
  with data_service_servers.running(workers=0) as address:
    with pytest.raises(ConnectionError, match="no tf.data service worker produced data within 3 s"):
      service.check_workers(address, timeout=3)
