"""Trains a Keras model on built TFRecord shards, a TFDS dataset or an image folder.

  python scripts/train.py     # the demo: sample PetImages -> pet_images/gray100 -> cnn
  python scripts/train.py --shards 'out/pet_images/gray100/1.0.0/pet_images-train.tfrecord*'
  python scripts/train.py --dataset pet_images/gray100 --data-dir out
  python scripts/train.py --folder ~/PetImages --image-size 160 --channels 3
  python scripts/train.py --shards '...' --data-service grpc://127.0.0.1:5050

Writes to --out:

* `model.keras`: the trained model (takes uint8 pixels; rescales and augments itself);
* `classes.json`: class names, image size and channels, for `scripts/predict.py`;
* `metrics.json` (rewritten after every epoch, atomically): "config" (every `RunConfig`
  field as used, plus "class_weight_values", "accelerator" and "strategy": name, workers,
  replicas, global_batch_size, train_shard_policy), "class_names", "counts" (examples per
  split and class), "epochs" (per epoch: epoch, loss, accuracy, val_loss, val_accuracy,
  examples: the training examples the epoch's steps consumed, counted by the model, over
  all replicas; seconds, images_per_second), "final" (per split train/validation/test:
  loss, accuracy, examples, images_per_second; null for a missing split, and all of it
  null until training has finished), "images_per_second" (train: mean over epochs; test),
  "outputs" (file names);
* `curves.png`, `samples.png`, `confusion.png`: learning curves, test images with true
  and predicted labels, and the test confusion matrix (validation when there is no test
  split, as with --folder);
* `tensorboard/`: TensorBoard logs;
* `backup/`: the state after the last finished epoch. Running the same command again
  after an interruption (Ctrl-C or kill -9) continues from there; with --seed and
  --deterministic the result is bit-identical to an uninterrupted run (shards and TFDS
  sources on CPU). A larger --epochs continues a finished run.

--data-service grpc://HOST:PORT runs the training split's pipeline (reading, decoding,
batching) on tf.data service workers (`scripts/data_service.py`) with dynamic sharding:
each training example is seen exactly once per epoch, in an order the workers decide (so
--deterministic no longer fixes the input order). Validation and test stay local, read in
their fixed order. It takes record shards (--shards, --dataset, the demo), not --folder.

Distribution (`models/strategy.py`): with TF_CONFIG naming two or more chief/worker tasks,
every worker runs this same command (on data, not the demo) under
MultiWorkerMirroredStrategy; otherwise several visible GPUs train under MirroredStrategy.
--batch-size is per replica: a step takes --batch-size x replicas images. The training
shards are split among workers by file when there are at least as many files as workers
(FILE), else every worker reads all of them and keeps its share of the batches (DATA, in a
fixed input order); evaluation splits always by DATA. Only the chief (the "chief" task,
else worker 0) writes --out; the other workers write their copy to a temporary folder
removed at the end ($PETPIPE_WORKER_DIR instead keeps it, for tests and debugging). To
resume, every worker must read the chief's --out (a shared folder); resuming with another
number of replicas is refused. --data-service is for a single training process.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import warnings
from typing import Callable, Optional, Sequence, Tuple

import click
import numpy as np

# TensorFlow's C++ start-up chatter is not the user's business (set before importing it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from petpipe import models  # noqa: E402
from petpipe import pipeline  # noqa: E402
from petpipe.models import accelerator  # noqa: E402
from petpipe.models import checkpoint  # noqa: E402
from petpipe.models import determinism  # noqa: E402
from petpipe.models import head  # noqa: E402
from petpipe.models import plots  # noqa: E402
from petpipe.models import strategy  # noqa: E402
from petpipe.pipeline import schema  # noqa: E402
from petpipe.pipeline import service  # noqa: E402

SPLITS = ("train", "validation", "test")
DEFAULT_IMAGE_SIZE = (100, 100)  # the tutorial's, when the data does not fix one
DEFAULT_CHANNELS = 1
DEFAULT_EPOCHS = 10
FOLDER_VALIDATION_SPLIT = 0.2
SAMPLE_COUNT = 16
CACHE_ENV = "PETPIPE_CACHE"
# Where a non-chief worker writes its copy of the outputs, kept (for tests and debugging);
# unset, it writes to a temporary folder removed at the end.
WORKER_DIR_ENV = "PETPIPE_WORKER_DIR"
# Seconds to wait for the tf.data service dispatcher to accept a connection.
DATA_SERVICE_CONNECT_SECONDS = 10

# What a run writes into --out.
OUTPUTS = {
    "model": "model.keras",
    "classes": "classes.json",
    "metrics": "metrics.json",
    "curves": "curves.png",
    "samples": "samples.png",
    "confusion": "confusion.png",
    "tensorboard": "tensorboard",
    "backup": "backup",
}

_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-(?P<split>[A-Za-z0-9_]+)\.tfrecord")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  """The embedded demo: synthetic PetImages, built and trained with no arguments.

  Attributes:
    per_class: synthetic images per class (before the builder's validation).
    min_size: smallest image side of the synthetic files.
    max_size: largest image side.
    builder_config: the `pet_images` config the demo builds.
    model: the model the demo trains.
    epochs: epochs the demo trains.
  """

  per_class: int = 600
  min_size: int = 64
  max_size: int = 160
  builder_config: str = "gray100"
  model: str = "cnn"
  epochs: int = 5


DEMO = DemoSettings()


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One training run, as the command line describes it.

  Attributes:
    shards: glob of the training shards.
    val_shards: glob of the validation shards (default: the sibling split).
    test_shards: glob of the test shards (default: the sibling split).
    dataset: TFDS name (e.g. "pet_images/gray100"), read from `data_dir`.
    data_dir: TFDS data directory for `dataset`.
    folder: image folder with one sub-folder per class.
    demo: no data given: train on the embedded demo's data.
    data_service: tf.data service dispatcher (grpc://HOST:PORT) the training input runs on.
    model: registered model name.
    epochs: total epochs (a resumed run counts the finished ones).
    batch_size: images per batch and replica.
    image_size: (height, width) the model sees.
    channels: 1 (grayscale) or 3 (RGB).
    learning_rate: Adam's learning rate.
    seed: run seed; None picks one (kept in the backup, so a resumed run reuses it).
    deterministic: deterministic ops and input order.
    augment: in-model augmentation; None keeps the model's default.
    class_weights: "auto" (inverse class frequency of the training split) or "none".
    mixed_precision: "auto", "on" or "off".
    jit_compile: "auto", "on" or "off".
    steps_per_execution: train steps per compiled call; None = auto.
    out: output folder.
  """

  shards: Optional[str] = None
  val_shards: Optional[str] = None
  test_shards: Optional[str] = None
  dataset: Optional[str] = None
  data_dir: Optional[str] = None
  folder: Optional[str] = None
  demo: bool = False
  data_service: Optional[str] = None
  model: Optional[str] = None
  epochs: Optional[int] = None
  batch_size: int = 32
  image_size: Optional[Tuple[int, int]] = None
  channels: Optional[int] = None
  learning_rate: float = 1e-3
  seed: Optional[int] = None
  deterministic: bool = False
  augment: Optional[bool] = None
  class_weights: str = "auto"
  mixed_precision: str = "auto"
  jit_compile: str = "auto"
  steps_per_execution: Optional[int] = None
  out: Optional[str] = None


@dataclasses.dataclass
class Data:
  """The splits of one source, ready for `model.fit`.

  Attributes:
    class_names: label order.
    counts: split -> examples per class (a split with no examples is left out).
    train: epoch seed -> training batches for that epoch.
    evaluation: split -> batches for evaluation (records: in a fixed order, unshuffled).
    image_size: (height, width) of the batches.
    channels: channels of the batches.
    train_shard_policy: how the training split is divided among workers ("FILE",
      "DATA"); None with a single worker.
  """

  class_names: list
  counts: dict
  train: Callable[[int], tf.data.Dataset]
  evaluation: dict
  image_size: Tuple[int, int]
  channels: int
  train_shard_policy: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class InputLayout:
  """How the input is batched and divided among training processes.

  Attributes:
    batch_size: images per global batch (--batch-size times the replicas); tf.distribute
      splits each one over the replicas.
    where: this process's placement: whether it is one of several workers, and which.
  """

  batch_size: int
  where: strategy.Placement = strategy.Placement()


# --------------------------------------------------------------------------- data sources


def _glob(pattern: str, option: str) -> list[str]:
  files = sorted(tf.io.gfile.glob(os.path.expanduser(pattern)))
  if not files:
    raise click.BadParameter(f"{pattern!r} matches no files.", param_hint=option)
  return files


def _split_of(path: str) -> Optional[Tuple[str, str]]:
  match = _SHARD_NAME.match(os.path.basename(path))
  return (match["prefix"], match["split"]) if match else None


def _siblings(train_files: Sequence[str], split: str) -> list[str]:
  """The files of `split` next to TFDS-named training shards (`<name>-train.tfrecord*`)."""
  named = {_split_of(f) for f in train_files}
  if len(named) != 1 or None in named:
    return []
  ((prefix, _),) = named
  pattern = os.path.join(os.path.dirname(train_files[0]), f"{prefix}-{split}.tfrecord*")
  return sorted(tf.io.gfile.glob(pattern))


def _check_one_split(files: Sequence[str], option: str) -> None:
  splits = sorted({s[1] for s in map(_split_of, files) if s})
  if len(splits) > 1:
    raise click.BadParameter(
        f"matches files of several splits ({', '.join(splits)}); point it at one split.",
        param_hint=option,
    )


def _label_counts(files: Sequence[str], num_classes: int) -> list[int]:
  """Examples per class, from the records' labels alone (no image is decoded)."""
  spec = {schema.LABEL: tf.io.FixedLenFeature([], tf.int64)}
  labels = tf.data.TFRecordDataset(list(files)).batch(4096).map(
      lambda records: tf.io.parse_example(records, spec)[schema.LABEL])
  counts = np.zeros(num_classes, dtype=np.int64)
  for batch in labels.as_numpy_iterator():
    counts += np.bincount(batch, minlength=num_classes)[:num_classes]
  return [int(c) for c in counts]


def _shape_of(storage: schema.ImageStorage, config: RunConfig) -> Tuple[Tuple[int, int], int]:
  """The image size and channels to train at: the command line's, else the stored ones."""
  size = config.image_size or (tuple(storage.size) if storage.size else DEFAULT_IMAGE_SIZE)
  return tuple(size), config.channels or storage.channels


def _pipeline_config(config: RunConfig, size, channels, num_classes: int, seed: int,
                     batch_size: int):
  # uint8 out: the model rescales (and augments) on the device.
  return pipeline.PipelineConfig(
      image_size=size, channels=channels, batch_size=batch_size, seed=seed,
      deterministic=config.deterministic, augment=False, normalize="none",
      label_mode="int", num_classes=num_classes)


def _shard_policy(split: str, files: Sequence[str],
                  where: strategy.Placement) -> strategy.AutoShardPolicy:
  """How `split` is divided among the workers: the training split by file when there are
  enough files (see `strategy.shard_policy`); evaluation splits always by DATA, so every
  worker also holds each split whole, for the predictions behind the pictures."""
  if not where.multi_worker:
    return strategy.AutoShardPolicy.OFF
  if split != "train":
    return strategy.AutoShardPolicy.DATA
  return strategy.shard_policy(len(files), where.workers)


def _record_data(files_by_split: dict, feats, config: RunConfig, seed: int,
                 layout: InputLayout) -> Data:
  """A `Data` over record files, batched and divided among workers as `layout` says."""
  class_names = schema.class_names_of(feats)
  size, channels = _shape_of(schema.storage_of(feats), config)
  base = _pipeline_config(config, size, channels, len(class_names), seed, layout.batch_size)
  counts = {}
  for split, files in files_by_split.items():
    per_class = _label_counts(files, len(class_names))
    if sum(per_class):
      counts[split] = per_class
  if "train" not in counts:
    raise click.ClickException("The training split has no examples.")
  where = layout.where

  def batches(split: str, pipeline_config, training: bool) -> tf.data.Dataset:
    policy = _shard_policy(split, files_by_split[split], where)
    files = strategy.shard_files(files_by_split[split], where, policy)
    if policy == strategy.AutoShardPolicy.DATA:
      # Each worker keeps every n-th batch: all must read the same batches in one order.
      pipeline_config = dataclasses.replace(pipeline_config, deterministic=True)
    dataset = pipeline.from_shards(files, pipeline_config, training=training)
    if where.multi_worker:
      # A worker's share of the batches is not known ahead: its epoch ends by running out.
      return dataset.with_options(strategy.input_options(policy))
    if training and config.data_service:
      # Each service worker batches the files it is given, so neither is the batch count.
      return service.through_service(dataset, config.data_service)
    # The batch count is known from the labels: Keras then shows progress against it.
    count = math.ceil(sum(counts[split]) / layout.batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(count))

  policy = _shard_policy("train", files_by_split["train"], where)
  return Data(
      class_names=class_names,
      counts=counts,
      train=lambda epoch_seed: batches("train", dataclasses.replace(base, seed=epoch_seed), True),
      evaluation={split: batches(split, base, False) for split in counts},
      image_size=size,
      channels=channels,
      train_shard_policy=policy.name if where.multi_worker else None,
  )


def _shards_data(config: RunConfig, seed: int, layout: InputLayout) -> Data:
  files = {"train": _glob(config.shards, "--shards")}
  _check_one_split(files["train"], "--shards")
  for split, pattern, option in (("validation", config.val_shards, "--val-shards"),
                                 ("test", config.test_shards, "--test-shards")):
    found = _glob(pattern, option) if pattern else _siblings(files["train"], split)
    if found:
      files[split] = found
  feats = schema.load_features(os.path.dirname(files["train"][0]))
  return _record_data(files, feats, config, seed, layout)


def _tfds_data(config: RunConfig, seed: int, layout: InputLayout) -> Data:
  try:
    builder = tfds.builder(config.dataset, data_dir=config.data_dir)
  except Exception as e:  # TFDS raises several types for a name it cannot find
    where = config.data_dir or "the default TFDS data dir"
    raise click.BadParameter(f"no built {config.dataset} in {where} ({_one_line(e)})",
                             param_hint="--dataset") from None
  if not builder.is_prepared():
    raise click.BadParameter(f"{config.dataset} is not built (no {builder.data_dir}).",
                             param_hint="--dataset")
  splits = builder.info.splits
  files = {s: [os.fspath(p) for p in splits[s].filepaths] for s in SPLITS if s in splits}
  if "train" not in files:
    raise click.BadParameter(f"{config.dataset} has no train split.", param_hint="--dataset")
  # The splits' files are read like --shards (whole files: a worker may get only some).
  return _record_data(files, builder.info.features, config, seed, layout)


def _folder_data(config: RunConfig, seed: int, layout: InputLayout) -> Data:
  folder = os.path.expanduser(config.folder)
  if not os.path.isdir(folder):
    raise click.BadParameter(f"{config.folder} is not a folder.", param_hint="--folder")
  size = tuple(config.image_size or DEFAULT_IMAGE_SIZE)
  channels = config.channels or DEFAULT_CHANNELS
  # One seeded split into train and validation; the seed must stay the same for both
  # subsets, so the training order is the loader's own reshuffle, not per-epoch seeds.
  train, validation = pipeline.image_dataset_from_directory(
      folder, labels="inferred", label_mode="int",
      color_mode="grayscale" if channels == 1 else "rgb", batch_size=layout.batch_size,
      image_size=size, shuffle=True, seed=seed, validation_split=FOLDER_VALIDATION_SPLIT,
      subset="both")
  class_names = list(train.class_names)
  counts = {}
  for split, dataset in (("train", train), ("validation", validation)):
    per_class = [0] * len(class_names)
    for path in dataset.file_paths:  # labels are the top-level sub-folders
      per_class[class_names.index(os.path.relpath(path, folder).split(os.sep)[0])] += 1
    if sum(per_class):
      counts[split] = per_class
  if "train" not in counts:
    raise click.ClickException(f"--folder {config.folder} has no images.")
  policy = None
  if layout.where.multi_worker:
    # Image files, not shards: every worker reads the folder and keeps its share of the
    # batches, in the same order everywhere (the loader's order is fixed by the seed).
    policy = strategy.AutoShardPolicy.DATA
    options = strategy.input_options(policy)
    train, validation = train.with_options(options), validation.with_options(options)
  evaluation = {"train": train}
  if "validation" in counts:
    evaluation["validation"] = validation
  return Data(class_names=class_names, counts=counts, train=lambda epoch_seed: train,
              evaluation=evaluation, image_size=size, channels=channels,
              train_shard_policy=None if policy is None else policy.name)


def load_data(config: RunConfig, seed: int, layout: Optional[InputLayout] = None) -> Data:
  """The splits `config` names: shards, a TFDS dataset or a folder."""
  layout = layout or InputLayout(config.batch_size)
  if config.shards:
    return _shards_data(config, seed, layout)
  if config.dataset:
    return _tfds_data(config, seed, layout)
  return _folder_data(config, seed, layout)


# --------------------------------------------------------------------------- the demo


def cache_dir() -> str:
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "petpipe")


def prepare_demo(settings: Optional[DemoSettings] = None) -> str:
  """Writes the sample PetImages and builds them with `pet_images` (each only once);
  returns the glob of the built training shards."""
  from petpipe.builders import sample_data
  from petpipe.builders.pet_images.pet_images_dataset_builder import Builder

  settings = settings or DEMO
  root = os.path.join(cache_dir(), "demo")
  name = f"sample-{settings.per_class}-{settings.min_size}-{settings.max_size}"
  sample = os.path.join(root, name)
  if not os.path.isdir(sample):
    click.echo(f"Writing the sample PetImages to {sample}")
    partial = f"{sample}.partial"  # renamed when complete: an interrupted write is redone
    shutil.rmtree(partial, ignore_errors=True)
    sample_data.write_sample_folder(partial, per_class=settings.per_class,
                                    min_size=settings.min_size, max_size=settings.max_size)
    os.replace(partial, sample)
  builder = Builder(config=settings.builder_config, data_dir=os.path.join(root, f"data-{name}"))
  if not builder.is_prepared():
    click.echo(f"Building pet_images/{settings.builder_config} into {builder.data_dir}")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=sample))
  return os.path.join(os.fspath(builder.data_dir), "pet_images-train.tfrecord*")


# --------------------------------------------------------------------------- training


class _Progress(keras.callbacks.ProgbarLogger):
  """Keras's progress bar, counting epochs out of the run's total (each `fit` call
  trains one epoch)."""

  def __init__(self, epochs: int):
    super().__init__()
    self._epochs = epochs

  def set_params(self, params):
    super().set_params({**params, "epochs": self._epochs})


class _EpochTimer(keras.callbacks.Callback):
  """Seconds spent on the training batches of the last epoch (validation excluded), and
  the examples those batches held."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start, self.seconds, self.examples = time.perf_counter(), None, None

  def on_test_begin(self, logs=None):
    self._training_done()

  def on_epoch_end(self, epoch, logs=None):
    self._training_done()

  def _training_done(self):
    if self.seconds is None:
      self.seconds = time.perf_counter() - self._start
      # Before validation resets the metrics (under a multi-worker strategy every worker
      # reads it here together: the read sums over all of them).
      self.examples = examples_seen(self.model)


def examples_seen(model: keras.Model) -> int:
  """The examples the training steps consumed since the metrics were last reset.

  Keras weights its "loss" tracker (a mean) by each batch's size, so the tracker's count
  is exactly that, summed over the replicas (and workers) of a distributed run: what the
  model saw, not what the input was expected to hold. (A float32 count: exact up to 2**24
  examples per epoch.)
  """
  tracker = next(m for m in model.metrics if m.name == "loss")
  return int(round(float(keras.ops.convert_to_numpy(tracker.count))))


def class_weights(counts: Sequence[int]) -> dict[int, float]:
  """Inverse class frequency, scaled so a balanced split gets 1.0 for every class."""
  total, present = sum(counts), sum(1 for c in counts if c)
  return {i: (total / (present * c) if c else 1.0) for i, c in enumerate(counts)}


def _augments(config: RunConfig) -> bool:
  """Whether the model augments: the command line's choice, else the model's default."""
  if config.augment is not None:
    return config.augment
  parameter = inspect.signature(models.get(config.model)).parameters.get("augment")
  return bool(parameter and parameter.default)


def _comparable(config: RunConfig, replicas: int = 1) -> dict:
  """The settings a resumed run must share with the interrupted one (not the epochs, where
  the folder is, nor whether the input runs on a tf.data service); with several replicas,
  their number too, since it sets the global batch."""
  settings = json.loads(json.dumps(dataclasses.asdict(config)))
  for free in ("epochs", "out", "data_service"):
    settings.pop(free)
  if replicas != 1:
    settings["replicas"] = replicas
  return settings


def _evaluate(model: keras.Model, dataset: tf.data.Dataset, examples: int) -> dict:
  start = time.perf_counter()
  result = model.evaluate(dataset, verbose=0, return_dict=True)
  seconds = time.perf_counter() - start
  return {"loss": float(result["loss"]), "accuracy": float(result["accuracy"]),
          "examples": examples, "images_per_second": examples / seconds}


def _predictions(model: keras.Model, dataset: tf.data.Dataset, multi_worker: bool = False):
  """Labels, predicted classes, their probabilities, and the first images, in order."""
  # Under a multi-worker strategy `predict_on_batch` gathers the batches of all workers;
  # here each worker predicts the whole split itself, so it calls the model directly.
  predict = (lambda x: model(x, training=False)) if multi_worker else model.predict_on_batch
  labels, predicted, confidence, images = [], [], [], []
  for batch_images, batch_labels in dataset:
    probabilities = head.probabilities(keras.ops.convert_to_numpy(predict(batch_images)))
    labels.append(np.asarray(batch_labels))
    predicted.append(probabilities.argmax(axis=-1))
    confidence.append(probabilities.max(axis=-1))
    if sum(len(i) for i in images) < SAMPLE_COUNT:
      images.append(np.asarray(batch_images))
  images = np.concatenate(images)[:SAMPLE_COUNT]
  return np.concatenate(labels), np.concatenate(predicted), np.concatenate(confidence), images


def _save_model(model: keras.Model, path: str) -> None:
  tmp = os.path.join(os.path.dirname(path), "tmp-" + os.path.basename(path))
  model.save(tmp)
  os.replace(tmp, path)


def _metrics(config: dict, data: Data, history: list, final: Optional[dict]) -> dict:
  """metrics.json's content; `final` is None until training has finished."""
  trained = [row["images_per_second"] for row in history]
  test = (final or {}).get("test")
  return {
      "config": config,
      "class_names": data.class_names,
      "counts": {split: dict(zip(data.class_names, c)) for split, c in data.counts.items()},
      "epochs": history,
      "final": final,
      "images_per_second": {
          "train": float(np.mean(trained)) if trained else None,
          "test": test["images_per_second"] if test else None,
      },
      "outputs": OUTPUTS,
  }


def _seed_and_state(config: RunConfig, backup: str,
                    replicas: int = 1) -> tuple[int, Optional[dict]]:
  """The run seed and the saved state of an interrupted run of the same settings, if any."""
  state = checkpoint.load(backup)
  if state is not None:
    if state.get("config") != _comparable(config, replicas):
      raise click.ClickException(
          f"{config.out} holds a run with other settings; use another --out or delete {backup}.")
    return state["seed"], state
  if config.seed is not None:
    return config.seed, None
  return determinism.derive(time.time_ns()), None


def _compiled_model(config: RunConfig, data: Data, seed: int,
                    settings: accelerator.AcceleratorSettings) -> keras.Model:
  num_classes = len(data.class_names)
  options = {} if config.augment is None else {"augment": config.augment}
  model = models.build(config.model, (*data.image_size, data.channels), num_classes,
                       seed=seed, **options)
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=head.loss(num_classes), metrics=[head.accuracy(num_classes)],
                jit_compile=settings.jit_compile,
                steps_per_execution=settings.steps_per_execution)
  return model


def _agree_with_chief(distribution: tf.distribute.Strategy, where: strategy.Placement,
                      seed: int, state: Optional[dict], backup: str) -> int:
  """The chief's run seed, for every worker (a worker given no --seed draws its own); fails
  on every worker alike unless all found the same finished epochs in the chief's backup."""
  rows = strategy.gather_from_workers(distribution, where, [seed, state["epoch"] if state else 0])
  epochs = [epoch for _, epoch in rows]
  if len(set(epochs)) > 1:
    raise click.ClickException(
        f"the workers found different finished epochs in {backup} "
        f"({', '.join(map(str, epochs))}): to resume, every worker must read the chief's --out.")
  return rows[0][0]


def _callbacks(config: RunConfig, out: str) -> tuple[_EpochTimer, list]:
  timer = _EpochTimer()
  callbacks = [timer, _Progress(config.epochs)]
  if importlib.util.find_spec("tensorboard"):
    callbacks.append(keras.callbacks.TensorBoard(
        os.path.join(out, OUTPUTS["tensorboard"]), write_graph=False))
  else:
    click.echo("tensorboard is not installed: no TensorBoard logs.", err=True)
  return timer, callbacks


def _report(model: keras.Model, data: Data, history: list, out: str,
            multi_worker: bool = False) -> dict:
  """Evaluates every split and draws the pictures; returns the final metrics per split."""
  final = {split: None for split in SPLITS}
  for split, dataset in data.evaluation.items():
    final[split] = _evaluate(model, dataset, sum(data.counts[split]))
  shown = next(s for s in ("test", "validation", "train") if s in data.evaluation)
  labels, predicted, confidence, images = _predictions(model, data.evaluation[shown],
                                                       multi_worker)
  plots.curves(history, os.path.join(out, OUTPUTS["curves"]))
  plots.samples(images, labels, predicted, confidence, data.class_names,
                os.path.join(out, OUTPUTS["samples"]))
  counts = plots.confusion_matrix(labels, predicted, len(data.class_names))
  plots.confusion(counts, data.class_names, os.path.join(out, OUTPUTS["confusion"]),
                  title=f"{shown} split")
  return final


def run(config: RunConfig, where: Optional[strategy.Placement] = None,
        distribution: Optional[tf.distribute.Strategy] = None) -> dict:
  """Trains (or resumes) `config` and writes every output; returns metrics.json's content.

  Under a multi-worker TF_CONFIG every worker runs all of it in step (training, evaluation
  and saving hold collective ops that must match), but only the chief writes to --out: the
  others write to $PETPIPE_WORKER_DIR, or to a temporary folder removed at the end.
  """
  where = where or strategy.placement()
  # A multi-worker strategy must exist before any other TensorFlow op runs: create it
  # first, or pass it in.
  distribution = distribution or strategy.create(where)
  if where.is_chief:
    return _train(config, where, distribution, config.out)
  kept = os.environ.get(WORKER_DIR_ENV)
  out = kept or tempfile.mkdtemp(prefix=f"petpipe-worker{where.worker_index}-")
  try:
    os.makedirs(out, exist_ok=True)
    return _train(config, where, distribution, out)
  finally:
    if not kept:
      shutil.rmtree(out, ignore_errors=True)


def _train(config: RunConfig, where: strategy.Placement,
           distribution: tf.distribute.Strategy, out: str) -> dict:
  """`run` for one process, writing to `out`; every worker resumes from the chief's backup."""
  backup = os.path.join(config.out, OUTPUTS["backup"])
  replicas = distribution.num_replicas_in_sync
  seed, state = _seed_and_state(config, backup, replicas)
  if where.multi_worker:
    seed = _agree_with_chief(distribution, where, seed, state, backup)
  settings = accelerator.choose(config.mixed_precision, config.jit_compile,
                                config.steps_per_execution or "auto")
  if replicas > 1 or where.multi_worker:
    # tf.distribute places each replica's share of a batch on its device itself.
    settings = dataclasses.replace(settings, prefetch_device=None)
  layout = InputLayout(strategy.global_batch_size(config.batch_size, replicas), where)
  try:
    data = load_data(config, seed, layout)
  except (OSError, ValueError, tf.errors.OpError) as e:
    # Unreadable or inconsistent data: one line, no traceback.
    raise click.ClickException(_one_line(e)) from None
  if len(data.class_names) < 2:
    raise click.ClickException(
        f"Training needs at least 2 classes; the data has {len(data.class_names)}: {data.class_names}.")

  accelerator.apply_policy(settings)
  determinism.seed_everything(seed, config.deterministic)
  # Variables made in the scope are mirrored on every replica, and kept equal.
  with distribution.scope():
    model = _compiled_model(config, data, seed, settings)
  # Keras compiles without XLA when a layer or deterministic ops do not allow it.
  settings = dataclasses.replace(settings, jit_compile=bool(model.jit_compile))
  history, start = [], 0
  if state:
    try:
      with distribution.scope():
        checkpoint.restore(model, backup, state)
    except (OSError, ValueError) as e:
      raise click.ClickException(
          f"cannot restore {backup} ({_one_line(e)}); delete it to start over.") from None
    history, start = state["history"], state["epoch"]
    if start < config.epochs:
      click.echo(f"Continuing from epoch {start} of {config.epochs} (state in {backup}).")
    else:
      click.echo(f"{config.out} already holds {start} trained epochs: evaluating them again "
                 "(raise --epochs to train on, or use another --out to start over).")

  weights = class_weights(data.counts["train"]) if config.class_weights == "auto" else None
  # The settings as used: defaults filled in from the data and the machine.
  used = {**dataclasses.asdict(config), "seed": seed, "image_size": list(data.image_size),
          "channels": data.channels, "augment": _augments(config),
          "class_weight_values": weights, "accelerator": dataclasses.asdict(settings),
          "strategy": {"name": where.strategy_name, "workers": where.workers,
                       "replicas": replicas, "global_batch_size": layout.batch_size,
                       "train_shard_policy": data.train_shard_policy}}
  checkpoint.write_json(os.path.join(out, OUTPUTS["classes"]), {
      "class_names": data.class_names, "image_size": list(data.image_size),
      "channels": data.channels, "model": config.model})
  timer, callbacks = _callbacks(config, out)
  verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in a log
  for epoch in range(start, config.epochs):
    # Every random choice of the epoch follows from (seed, epoch): a resumed run repeats it.
    determinism.reseed_layers(model, seed, epoch)
    train = accelerator.prefetch(data.train(determinism.derive(seed, epoch)), settings)
    logs = model.fit(train, validation_data=data.evaluation.get("validation"),
                     initial_epoch=epoch, epochs=epoch + 1, shuffle=False,
                     class_weight=weights, callbacks=callbacks, verbose=verbose).history
    history.append({"epoch": epoch + 1, **{k: float(v[-1]) for k, v in logs.items()},
                    "examples": timer.examples, "seconds": timer.seconds,
                    "images_per_second": timer.examples / timer.seconds})
    checkpoint.save(model, os.path.join(out, OUTPUTS["backup"]), epoch + 1,
                    config=_comparable(config, replicas), seed=seed, history=history)
    checkpoint.write_json(os.path.join(out, OUTPUTS["metrics"]),
                          _metrics(used, data, history, None))

  _save_model(model, os.path.join(out, OUTPUTS["model"]))
  final = _report(model, data, history, out, where.multi_worker)
  metrics = _metrics(used, data, history, final)
  checkpoint.write_json(os.path.join(out, OUTPUTS["metrics"]), metrics)
  return metrics


# --------------------------------------------------------------------------- command line


class _Size(click.ParamType):
  """An image size: "100" (square) or "100,80" / "100x80" (height, width)."""

  name = "SIZE"

  def convert(self, value, param, ctx):
    if isinstance(value, tuple):
      return value
    try:
      size = tuple(int(v) for v in re.split(r"[,x]", str(value)))
    except ValueError:
      self.fail(f"expected N or H,W. Received: {value!r}", param, ctx)
    if len(size) == 1:
      size = size * 2
    if len(size) != 2 or min(size) <= 0:
      self.fail(f"expected positive N or H,W. Received: {value!r}", param, ctx)
    return size


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def _prepare_out(out: str) -> None:
  """Fails early (before any training) when `out` cannot be written."""
  try:
    os.makedirs(out, exist_ok=True)
    probe = os.path.join(out, ".write-test")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise click.BadParameter(f"cannot write to {out}: {e.strerror or e}.",
                             param_hint="--out") from None


def _service_address(address: str) -> str:
  """`grpc://HOST:PORT` or `HOST:PORT`, checked, as `grpc://HOST:PORT`."""
  try:
    full = service.service_address(address)
  except ValueError as e:
    raise click.BadParameter(str(e), param_hint="--data-service") from None
  host, _, port = full.split("://", 1)[1].rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise click.BadParameter(f"expected grpc://HOST:PORT or HOST:PORT. Received: {address!r}",
                             param_hint="--data-service")
  return full


def _check_dispatcher(address: str) -> None:
  """Fails early when nothing answers at the dispatcher's address: TensorFlow would wait for
  it forever."""
  host, _, port = address.split("://", 1)[1].rpartition(":")
  try:
    socket.create_connection((host.strip("[]"), int(port)),
                             timeout=DATA_SERVICE_CONNECT_SECONDS).close()
  except OSError as e:
    raise click.BadParameter(
        f"no tf.data service dispatcher answers at {address} ({e.strerror or e}); start one "
        "with scripts/data_service.py dispatcher.", param_hint="--data-service") from None


def resolve(config: RunConfig) -> RunConfig:
  """Fills the defaults that depend on the source (demo, model, epochs, out) and checks
  the combination of data options."""
  sources = [o for o, v in (("--shards", config.shards), ("--dataset", config.dataset),
                            ("--folder", config.folder)) if v]
  if len(sources) > 1:
    raise click.UsageError(f"Give one data source, not {' and '.join(sources)}.")
  if (config.val_shards or config.test_shards) and not config.shards:
    raise click.UsageError("--val-shards and --test-shards go with --shards.")
  if config.data_dir and not config.dataset:
    raise click.UsageError("--data-dir goes with --dataset.")
  data_service = config.data_service and _service_address(config.data_service)
  if data_service and config.folder:
    raise click.UsageError("--data-service reads record shards, not --folder: build the "
                           "folder first (builders/image_folder), then use --dataset.")
  demo = not sources
  model = config.model or (DEMO.model if demo else models.DEFAULT)
  try:
    models.get(model)
  except ValueError as e:
    raise click.BadParameter(str(e), param_hint="--model") from None
  return dataclasses.replace(
      config, demo=demo, model=model, data_service=data_service or None,
      epochs=config.epochs or (DEMO.epochs if demo else DEFAULT_EPOCHS),
      out=config.out or os.path.join("outputs", "demo" if demo else model))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--shards", help="Glob of training shards; validation/test siblings of a built "
              "TFDS dataset are found automatically.")
@click.option("--val-shards", help="Glob of validation shards.")
@click.option("--test-shards", help="Glob of test shards.")
@click.option("--dataset", help="TFDS dataset name, e.g. pet_images/gray100.")
@click.option("--data-dir", help="TFDS data directory for --dataset.")
@click.option("--folder", help="Image folder with one sub-folder per class.")
@click.option("--data-service", metavar="ADDRESS",
              help="tf.data service dispatcher (grpc://HOST:PORT) to run the training input "
              "on, each example once per epoch; see scripts/data_service.py.")
@click.option("--model", help=f"One of {', '.join(models.names())}. "
              f"[default: {DEMO.model} for the demo, else {models.DEFAULT}]")
@click.option("--epochs", type=click.IntRange(min=1),
              help=f"[default: {DEMO.epochs} for the demo, else {DEFAULT_EPOCHS}]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Images per batch and replica (GPU or worker).")
@click.option("--image-size", type=_Size(),
              help="N or H,W. [default: the stored size of raw records, else 100]")
@click.option("--channels", type=click.Choice(["1", "3"]),
              help="[default: the stored channels, else 1]")
@click.option("--learning-rate", default=1e-3, show_default=True,
              type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", type=int, help="Run seed. [default: random, kept for resuming]")
@click.option("--deterministic", is_flag=True, help="Deterministic ops and input order.")
@click.option("--augment/--no-augment", default=None,
              help="In-model augmentation. [default: the model's]")
@click.option("--class-weights", default="auto", show_default=True,
              type=click.Choice(["auto", "none"]), help="auto: inverse class frequency.")
@click.option("--mixed-precision", default="auto", show_default=True,
              type=click.Choice(accelerator.FLAGS), help="auto: on when a GPU is visible.")
@click.option("--jit-compile", default="auto", show_default=True,
              type=click.Choice(accelerator.FLAGS), help="XLA; auto: on when a GPU is visible.")
@click.option("--steps-per-execution", type=click.IntRange(min=1),
              help=f"[default: auto: {accelerator.GPU_STEPS_PER_EXECUTION} with a GPU, else 1]")
@click.option("--out", help="Output folder. [default: outputs/demo or outputs/MODEL]")
def main(**options):
  """Trains a model and writes it with its metrics and pictures to --out.

  With no data option it runs the demo: it writes sample PetImages to the cache
  (~/.cache/petpipe, or $PETPIPE_CACHE) once, builds them with the pet_images builder
  and trains the cnn.
  """
  if options["channels"]:
    options["channels"] = int(options["channels"])
  # Each epoch is one `fit` over a dataset of unknown length, which ends by running out:
  # expected here, not worth Keras's warning.
  warnings.filterwarnings("ignore", message="Your input ran out of data")
  config = resolve(RunConfig(**options))
  try:
    where = strategy.placement()
  except ValueError as e:
    raise click.ClickException(_one_line(e)) from None
  if where.multi_worker and config.data_service:
    raise click.UsageError("--data-service is for a single training process; under a "
                           "multi-worker TF_CONFIG each worker reads its share itself.")
  if where.multi_worker and config.demo:
    raise click.UsageError("Multi-worker training needs --shards, --dataset or --folder "
                           "(the demo builds its data on one machine).")
  if where.is_chief:
    _prepare_out(config.out)
  if config.data_service:
    _check_dispatcher(config.data_service)
  try:
    # Before any other TensorFlow op (the demo's build runs some).
    distribution = strategy.create(where)
    if config.demo:
      config = dataclasses.replace(config, shards=prepare_demo())
    metrics = run(config, where, distribution)
  except KeyboardInterrupt:
    click.echo(f"\nInterrupted. Run the same command to continue from the last finished "
               f"epoch (kept in {os.path.join(config.out, OUTPUTS['backup'])}).", err=True)
    raise click.exceptions.Exit(130)
  final = metrics["final"]
  shown = next((s for s in ("test", "validation") if final[s]), "train")
  click.echo(f"{shown.capitalize()} accuracy: {final[shown]['accuracy']:.1%} "
             f"on {final[shown]['examples']} images (loss {final[shown]['loss']:.3f}).")
  if not where.is_chief:
    click.echo(f"Worker {where.worker_index} done; the chief writes the outputs.")
    return
  click.echo(f"Outputs in {config.out}: " + ", ".join(
      v for k, v in OUTPUTS.items() if k != "backup") + ".")


if __name__ == "__main__":
  main()
