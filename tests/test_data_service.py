"""tf.data service: a dispatcher and two workers on 127.0.0.1, started by the project's command."""

import collections
import logging
import os
import signal
import time

import keras

import pytest
import tensorflow_datasets as tfds

from petpipe import experiment
from petpipe import pipeline
from petpipe import sample_data
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images
from petpipe.pipeline import service
from tests import data_service_servers
from tests.test_train import write_shards


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


EXAMPLES = 2400


class _ReplaceWorker(keras.callbacks.Callback):
  """After the first epoch's 5th step, starts a second worker and, once it has registered,
  kills the first (SIGKILL): the killed worker held every file taken so far, so it takes
  examples with it. (Two workers running from the start share the files at random, and the
  killed one may have handed all of its own over already.) The first epoch's steps are
  slowed down, so the first worker's bounded buffers are still in the middle of its files.
  The second worker's process is `second`, parked (its imports done): its server starts
  and registers only then."""

  def __init__(self, first, address: str, second):
    super().__init__()
    self.first, self.address, self.second, self.epoch = first, address, second, 0
    self.replaced = False

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    if self.epoch == 0 and not self.replaced:
      time.sleep(0.01)
      if batch == 4:
        self.replaced = True
        data_service_servers.unpark(self.second, "worker", "--dispatcher", self.address,
                                    "--heartbeat", "0.5")
        data_service_servers.line_with(self.second, "worker registered")
        os.kill(self.first.pid, signal.SIGKILL)
        self.first.wait()


def _lost_worker_warnings(caplog) -> int:
  return sum("a worker was lost" in r.getMessage() for r in caplog.records)


EXAMPLES = 2400


@pytest.mark.slow
def test_training_goes_on_when_a_worker_is_killed_mid_epoch(tmp_path, caplog):
  # 2,400 examples in 24 shards of 100; a worker's shuffle buffer holds 1,024 records.
  shards = write_shards(str(tmp_path / "data"), {"train": EXAMPLES, "validation": 8, "test": 8},
                        num_shards=24)
  caplog.set_level(logging.WARNING)
  second = data_service_servers.park()
  try:
    with data_service_servers.cluster(workers=1, dispatcher_args=["--worker-timeout", "2"],
                                      worker_args=[["--heartbeat", "0.5"]]) as (address, workers):
      replace = _ReplaceWorker(workers[0], address, second)
      runs = []
      for name, callbacks in (("first", [replace]), ("rerun", [])):
        # No suspects.csv: it reads the local shards, never the service.
        runs.append(experiment.run(experiment.RunConfig(
            shards=shards, data_service=address, model="mlp", epochs=2, batch_size=16, seed=3,
            worker_timeout=3, stall_timeout=30, suspects=0, out=str(tmp_path / name)),
            callbacks=callbacks))
        if name == "first":
          first_warnings = _lost_worker_warnings(caplog)
  finally:
    second.kill()
    second.wait()
  assert replace.replaced
  first, rerun = ([row["examples"] for row in run["epochs"]] for run in runs)
  # At most once per epoch: the epoch of the kill misses what the lost worker held and ends
  # `worker_timeout` after its last batch, with one warning; every later epoch, and every
  # epoch of a rerun (the dispatcher still lists the dead worker), sees each example once.
  assert 0 < first[0] < EXAMPLES and first[1:] == [EXAMPLES], first
  assert first_warnings == 1
  assert rerun == [EXAMPLES] * 2 and _lost_worker_warnings(caplog) == 1
  assert all(run["final"]["test"]["examples"] == 8 for run in runs)
