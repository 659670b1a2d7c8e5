"""A whole training run from one config: data → model → resumable training → outputs.

    from petpipe import experiment
    metrics = experiment.run(experiment.RunConfig(shards="out/.../pet_images-train.tfrecord*",
                                                  model="cnn", epochs=5, out="outputs/cnn"))

The `petpipe train` command fills a `RunConfig` and calls `run`; errors are ordinary
exceptions (ValueError, FileNotFoundError, ConnectionError). Writes to `out`:

* `model.keras`: the trained model (takes uint8 pixels; rescales and augments itself), with
  its optimizer's state, as Keras saves it;
* `classes.json`: class names, model name and "preprocessing" (the one image transform's
  settings: size, channels, resize policy), which `petpipe predict` applies;
* `metrics.json` (rewritten after every epoch, atomically): the config as used, class names,
  counts per split and class, per-epoch history, final metrics per split, images/s, and
  once the run completes, what a later run continues from ("resume");
* `model.best.keras`: the model of the epoch with the lowest validation loss (training
  loss without a validation split), when `best_checkpoint`; metrics.json's "best" names its
  epoch and file: when that epoch is the last, the final `model.keras` is it, and
  `model.best.keras` is not kept beside it;
* `history.csv`: Keras's `CSVLogger`, a row per epoch;
* `curves.png` (the best epoch marked), `samples.png`, `confusion.png` (titled with the
  model it scored and its accuracy), `tensorboard/` (Keras's logs, and at the end the
  confusion matrix and the wrong predictions as images);
* `backup/`: the state saved every `save_every` steps (default every ~2 minutes) and after
  every epoch; running the same config again continues from there, in the middle of an
  epoch if need be (bit-identical with `seed` and `deterministic` on CPU). It is removed
  when the run completes: then metrics.json and model.keras hold the state, so the same
  config evaluates the finished run again, and more `epochs` train it on.

Under a multi-worker TF_CONFIG every worker runs this same config in step; only the chief
(the "chief" task, else worker 0) writes `out`, the others write to $PETPIPE_WORKER_DIR or
a temporary folder removed at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import inspect
import io
import json
import math
import os
import shutil
import tempfile
from typing import Iterable, Optional, Tuple, Union

import keras
import tensorflow as tf

from petpipe import models
from petpipe import suspects as suspects_lib
from petpipe.models import accelerator
from petpipe.models import determinism
from petpipe.models import head
from petpipe.models import preprocessing as model_preprocessing
from petpipe.models import reports
from petpipe.models import strategy
from petpipe.models import training
from petpipe.models import watchdog
from petpipe.models import checkpoint
from petpipe.pipeline import folder_lock
from petpipe.pipeline import service
from petpipe.pipeline import training_data
from petpipe.pipeline import verify
from petpipe.images import errors
from petpipe.images import transform

DEFAULT_EPOCHS = 10
LR_SCHEDULES = ("constant", "cosine", "plateau")
CACHE_ENV = "PETPIPE_CACHE"
# Where a non-chief worker writes its copy of the outputs, kept (for tests and debugging).
WORKER_DIR_ENV = "PETPIPE_WORKER_DIR"

# What metrics.json keeps of a completed run's backup (its weights are model.keras's), so
# the run can be evaluated again or trained on after the backup is removed.
RESUME_KEYS = ("epoch", "seed", "steps", "config", "callbacks")

# What a run writes into `out`.
OUTPUTS = {
    "model": "model.keras",
    "best": "model.best.keras",
    "history": "history.csv",
    "classes": "classes.json",
    "metrics": "metrics.json",
    "curves": "curves.png",
    "samples": "samples.png",
    "confusion": "confusion.png",
    "suspects": "suspects.csv",
    "tensorboard": "tensorboard",
    "backup": "backup",
}


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  """The embedded demo: synthetic PetImages, built and trained with no data given.

  Sized to take ~30 s on 2 CPU cores, stopping while the model still learns (~80-90%
  test accuracy, see README).

  Attributes:
    per_class: synthetic images per class (before the builder's validation).
    min_size: smallest image side of the synthetic files.
    max_size: largest image side.
    builder_config: the `pet_images` config the demo builds.
    model: the model the demo trains.
    epochs: epochs the demo trains.
    seed: the run seed when none is given, so every newcomer trains the same run.
  """

  per_class: int = 400
  min_size: int = 64
  max_size: int = 160
  builder_config: str = "gray100"
  model: str = "cnn"
  epochs: int = 4
  seed: int = 0


DEMO = DemoSettings()


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """One training run.

  Attributes:
    shards: glob of the training shards (validation/test found beside them).
    val_shards: glob of the validation shards (default: the sibling split).
    test_shards: glob of the test shards (default: the sibling split).
    dataset: TFDS name (e.g. "pet_images/gray100"), read from `data_dir`.
    data_dir: TFDS data directory for `dataset`.
    folder: image folder with one sub-folder per class.
    train_on_held_out: allow `shards` of a validation or test split (used for training
      only, never also to validate or test); refused by default.
    demo: no data given: train on the embedded demo's data (set by `resolve`).
    data_service: tf.data service dispatcher (grpc://HOST:PORT) the training input runs on.
    worker_timeout: with `data_service`, seconds without a batch after which an epoch that
      has delivered batches ends (a service worker was lost, and the examples of the files
      it held are missed that epoch); below `stall_timeout`.
    model: registered model name (default: the demo's, else `models.DEFAULT`).
    epochs: total epochs (a resumed run counts the finished ones).
    batch_size: images per batch and replica.
    image_size: (height, width) the model sees (default: the stored size, else 100).
    channels: 1 (grayscale) or 3 (RGB) (default: the stored channels, else 1).
    learning_rate: Adam's learning rate.
    seed: run seed; None picks one (the demo's is fixed: `DEMO.seed`), kept in the backup,
      so a resumed run reuses it.
    deterministic: deterministic ops and input order.
    augment: in-model augmentation: True (flip, rotate), False, or names from
      `models.preprocessing.AUGMENTATIONS` (a list or "flip,zoom"); None keeps the
      model's default.
    class_weights: "auto" (inverse class frequency of the training split) or "none".
    mixed_precision: "auto", "on" or "off".
    jit_compile: "auto", "on" or "off".
    steps_per_execution: train steps per compiled call; None = auto.
    out: output folder (default: outputs/demo or outputs/MODEL).
    save_every: save the training state every this many steps (and after each epoch);
      None: every ~2 minutes of training; 0: after each epoch only.
    best_checkpoint: keep `model.best.keras`, the epoch with the lowest validation loss
      (at the end, only when that epoch is not the last: `model.keras` is it then).
    early_stopping: stop after this many epochs without a lower validation loss; None
      trains every epoch.
    lr_schedule: "constant", "cosine" (per-epoch cosine decay to 0 over `epochs`) or
      "plateau" (halved after 2 epochs without a lower validation loss).
    suspects: write `suspects.csv`, the training and validation files on which the
      reported model's loss is highest, this many (record files only; 0: none).
  """

  shards: Optional[str] = None
  val_shards: Optional[str] = None
  test_shards: Optional[str] = None
  dataset: Optional[str] = None
  data_dir: Optional[str] = None
  folder: Optional[str] = None
  train_on_held_out: bool = False
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
  augment: Union[bool, str, Tuple[str, ...], None] = None
  class_weights: str = "auto"
  mixed_precision: str = "auto"
  jit_compile: str = "auto"
  steps_per_execution: Optional[int] = None
  out: Optional[str] = None
  save_every: Optional[int] = None
  best_checkpoint: bool = True
  early_stopping: Optional[int] = None
  lr_schedule: str = "constant"
  stall_timeout: float = watchdog.DEFAULT_TIMEOUT
  worker_timeout: float = service.WORKER_TIMEOUT_SECONDS
  suspects: int = suspects_lib.DEFAULT_TOP

  def source(self) -> training_data.DataSource:
    return training_data.DataSource(
        shards=self.shards, val_shards=self.val_shards, test_shards=self.test_shards,
        dataset=self.dataset, data_dir=self.data_dir, folder=self.folder,
        train_on_held_out=self.train_on_held_out)


def resolve(config: RunConfig) -> RunConfig:
  """Fills the defaults that depend on the source (demo, model, epochs, out) and checks
  the combination of options.

  Raises:
    ValueError: several data sources, options that do not go together, an unknown model,
      a malformed tf.data service address.
  """
  demo = not any((config.shards, config.dataset, config.folder, config.val_shards,
                  config.test_shards, config.data_dir))
  if not demo:
    config.source()  # checks the combination of data options
  data_service = config.data_service and service.service_address(config.data_service)
  if data_service and config.folder:
    raise ValueError("A tf.data service reads record shards, not a folder: build the "
                     "folder first (the image_folder builder), then train on the dataset.")
  model = config.model or (DEMO.model if demo else models.DEFAULT)
  models.get(model)
  if config.batch_size <= 0 or (config.epochs is not None and config.epochs <= 0):
    raise ValueError("batch_size and epochs must be positive.")
  if config.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. "
                     f"Received: lr_schedule={config.lr_schedule!r}")
  if (config.save_every is not None and config.save_every < 0) or \
      (config.early_stopping is not None and config.early_stopping <= 0):
    raise ValueError("save_every must be >= 0 and early_stopping positive.")
  if config.stall_timeout <= 0:
    raise ValueError(f"stall_timeout must be positive. Received: stall_timeout={config.stall_timeout!r}")
  if data_service and not 0 < config.worker_timeout < config.stall_timeout:
    raise ValueError("worker_timeout must be positive and below stall_timeout (a lost worker "
                     "ends an epoch, a stalled input the run). Received: "
                     f"worker_timeout={config.worker_timeout!r}, stall_timeout={config.stall_timeout!r}")
  augment = config.augment
  if augment is not None and not isinstance(augment, bool):
    augment = model_preprocessing.augmentation_names(augment) or False
  return dataclasses.replace(
      config, demo=demo, model=model, data_service=data_service or None, augment=augment,
      epochs=config.epochs or (DEMO.epochs if demo else DEFAULT_EPOCHS),
      out=config.out or os.path.join("outputs", "demo" if demo else model))


def check_out(out: str) -> None:
  """Raises OSError early (before any training) when `out` (a local folder, or `gs://...`,
  `s3://...`, `ram://...`: any file system TensorFlow knows) cannot be written."""
  try:
    tf.io.gfile.makedirs(out)
    probe = os.path.join(out, ".write-test")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("")
    tf.io.gfile.remove(probe)
  except (OSError, tf.errors.OpError) as e:
    raise OSError(f"cannot write to {out}: {errors.one_line(e)}.") from None


def cache_dir() -> str:
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "petpipe")


def prepare_demo(settings: Optional[DemoSettings] = None) -> str:
  """Writes the sample PetImages and builds them with `pet_images` (each only once);
  returns the glob of the built training shards."""
  import tensorflow_datasets as tfds

  from petpipe import sample_data
  from petpipe.builders.pet_images.pet_images_dataset_builder import Builder

  settings = settings or DEMO
  root = os.path.join(cache_dir(), "demo")
  name = f"sample-{settings.per_class}-{settings.min_size}-{settings.max_size}"
  sample = os.path.join(root, name)
  if not os.path.isdir(sample):
    print(f"Writing the sample PetImages to {sample}", flush=True)
    partial = f"{sample}.partial"  # renamed when complete: an interrupted write is redone
    shutil.rmtree(partial, ignore_errors=True)
    sample_data.write_sample_folder(partial, per_class=settings.per_class,
                                    min_size=settings.min_size, max_size=settings.max_size)
    os.replace(partial, sample)
  builder = Builder(config=settings.builder_config, data_dir=os.path.join(root, f"data-{name}"))
  # (TFDS's own `is_prepared` logs a warning for a version folder not built yet.)
  if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
    print(f"Building pet_images/{settings.builder_config} into {builder.data_dir}", flush=True)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=sample))
  return os.path.join(os.fspath(builder.data_dir), "pet_images-train.tfrecord*")


def run(config: RunConfig, where: Optional[strategy.Placement] = None,
        distribution: Optional[tf.distribute.Strategy] = None,
        callbacks: Iterable[keras.callbacks.Callback] = ()) -> dict:
  """Trains (or resumes) `config` and writes every output; returns metrics.json's content.

  `callbacks` are extra Keras callbacks, given to the run's one `fit` with its own.

  `config` is resolved first (`resolve`); with no data source the demo's data is built.
  Under a multi-worker TF_CONFIG every worker runs all of it in step (training, evaluation
  and saving hold collective ops that must match), but only the chief writes to `out`.
  """
  config = resolve(config)
  where = where or strategy.placement()
  if where.multi_worker and config.data_service:
    raise ValueError("A tf.data service is for a single training process; under a "
                     "multi-worker TF_CONFIG each worker reads its share itself.")
  if where.multi_worker and config.demo:
    raise ValueError("Multi-worker training needs shards, a dataset or a folder (the demo "
                     "builds its data on one machine).")
  if where.is_chief:
    check_out(config.out)
  if config.data_service:
    service.check_dispatcher(config.data_service)
    service.check_workers(config.data_service)
  # A multi-worker strategy must exist before any other TensorFlow op runs (the demo's
  # build runs some): create it first, or pass it in.
  distribution = distribution or strategy.create(where)
  if config.demo:
    config = dataclasses.replace(config, shards=prepare_demo())
  if where.is_chief:
    # One run per output folder: a second one would "continue" the first one's live state.
    with folder_lock.exclusive(os.path.join(config.out, ".lock"),
                               f"{config.out} is being trained"):
      return _train(config, where, distribution, config.out, callbacks)
  kept = os.environ.get(WORKER_DIR_ENV)
  out = kept or tempfile.mkdtemp(prefix=f"petpipe-worker{where.worker_index}-")
  try:
    os.makedirs(out, exist_ok=True)
    return _train(config, where, distribution, out, callbacks)
  finally:
    if not kept:
      shutil.rmtree(out, ignore_errors=True)


def _train(config: RunConfig, where: strategy.Placement,
           distribution: tf.distribute.Strategy, out: str,
           extra_callbacks: Iterable[keras.callbacks.Callback] = ()) -> dict:
  """`run` for one process, writing to `out`; every worker resumes from the chief's backup."""
  backup = os.path.join(config.out, OUTPUTS["backup"])
  replicas = distribution.num_replicas_in_sync
  # An interrupted run's state is its backup; a completed run removed that, and left its
  # state in metrics.json and its weights (with the optimizer's) in model.keras.
  state, restore_from = checkpoint.load(backup), backup
  if state is None:
    state, restore_from = finished_state(config.out), config.out
  if state:
    seed = state["seed"]
  elif config.seed is not None:
    seed = config.seed
  else:  # the demo's seed is fixed, so what the README quotes is what a newcomer sees
    seed = DEMO.seed if config.demo else training.new_seed()
  if where.multi_worker:
    seed = _agree_with_chief(distribution, where, seed, state, backup)
  chosen = accelerator.choose(config.mixed_precision, config.jit_compile,
                              config.steps_per_execution or "auto")
  if replicas > 1 or where.multi_worker:
    # tf.distribute places each replica's share of a batch on its device itself.
    chosen = dataclasses.replace(chosen, prefetch_device=None)
  layout = training_data.InputLayout(
      batch_size=strategy.global_batch_size(config.batch_size, replicas),
      workers=where.workers, worker_index=where.worker_index,
      data_service=config.data_service, lost_worker_timeout=config.worker_timeout)
  data = training_data.load(config.source(), layout, seed=seed, image_size=config.image_size,
                            channels=config.channels, deterministic=config.deterministic)
  # A resumed run must share the settings and read the same data (classes, counts).
  settings = {**_comparable(config, replicas),
              **{f"data_{key}": value for key, value in data.fingerprint.items()}}
  if state:
    folder = config.out if "://" in config.out else os.path.abspath(config.out)
    # A seed is compared only when the user gave one: otherwise the saved run's is reused.
    given = {"seed": config.seed} if config.seed is not None else {}
    training.check_settings(state, {**settings, **given}, folder,
                            backup if restore_from == backup else config.out,
                            describe=_setting_name)

  accelerator.apply_policy(chosen)
  determinism.seed_everything(seed, config.deterministic)
  # Variables made in the scope are mirrored on every replica, and kept equal.
  with distribution.scope():
    model = _compiled_model(config, data, seed, chosen)
  # Keras compiles without XLA when a layer or deterministic ops do not allow it.
  chosen = dataclasses.replace(chosen, jit_compile=bool(model.jit_compile))
  if state:
    start, step = int(state["epoch"]), int(state.get("step", 0))
    if start < config.epochs:
      of = f" of {state['steps']}" if state.get("steps") else ""
      kept_in = backup if restore_from == backup else \
          f"{os.path.join(config.out, OUTPUTS['metrics'])} and {OUTPUTS['model']}"
      print(f"Continuing from epoch {start + 1}, step {step}{of} ({start} of {config.epochs} "
            f"epochs done; state in {kept_in}).", flush=True)
    else:
      print(f"{config.out} already holds {start} trained epochs: evaluating them again "
            "(raise epochs to train on, or use another output folder to start over).",
            flush=True)

  weights = (training.class_weights(data.counts["train"]) if config.class_weights == "auto"
             else None)
  preprocessing = transform.Preprocessing(image_size=tuple(data.image_size),
                                          channels=data.channels)
  # The settings as used: defaults filled in from the data and the machine.
  used = {**dataclasses.asdict(config), "seed": seed, "image_size": list(data.image_size),
          "channels": data.channels, "augment": _augments(config),
          "class_weight_values": weights, "accelerator": dataclasses.asdict(chosen),
          "strategy": {"name": where.strategy_name, "workers": where.workers,
                       "replicas": replicas, "global_batch_size": layout.batch_size,
                       "train_shard_policy": data.train_shard_policy}}
  checkpoint.write_json(os.path.join(out, OUTPUTS["classes"]), {
      "class_names": data.class_names, "image_size": list(data.image_size),
      "channels": data.channels, "model": config.model,
      "preprocessing": preprocessing.to_dict()})
  paths = {k: os.path.join(out, v) for k, v in OUTPUTS.items()}

  validation = data.evaluation.get("validation")
  monitor = "val_loss" if validation is not None else "loss"
  writes_suspects = bool(config.suspects) and data.named is not None and not where.multi_worker
  outputs = {k: v for k, v in OUTPUTS.items()
             if (k != "best" or config.best_checkpoint) and (k != "suspects" or writes_suspects)}

  def write_metrics(history, final=None, finished=None):
    best = reports.best_epoch(history, monitor) if config.best_checkpoint else None
    content = reports.metrics(used, data.class_names, data.counts, history, final, outputs,
                              best)
    if finished:
      content.update(finished)
    checkpoint.write_json(paths["metrics"], content)
    return content

  own_backup = os.path.join(out, OUTPUTS["backup"])
  if state and int(state["epoch"]) < config.epochs and config.best_checkpoint:
    _keep_best_so_far(state["history"], monitor, paths)
  _continue_csv(paths["history"], int(state["epoch"]) if state else 0)
  # A record changed on disk since the labels were read: name the shard, in one line.
  with verify.naming_corrupt_shard([f for split in data.record_files.values() for f in split]):
    history = training.fit_epochs(
        model, data.train, epochs=config.epochs, seed=seed,
        backup_dir=own_backup, settings=settings, state=state,
        restore_from=restore_from, validation=validation, class_weight=weights,
        callbacks=[*_callbacks(config, paths, monitor), *extra_callbacks],
        prepare=lambda batches: accelerator.prefetch(batches, chosen),
        after_epoch=write_metrics, save_every=config.save_every)
    training.save_model(model, paths["model"])
    best = reports.best_epoch(history, monitor) if config.best_checkpoint else None
    trained = history[-1]["epoch"] if history else 0
    # The best checkpoint of the last epoch is the final model: one file, not two.
    best_is_final = bool(best) and best["epoch"] == trained
    # The run reports the model it tells the user to use: the best checkpoint, with the last
    # epoch's model's metrics beside it when that is another.
    reported, name, last = model, OUTPUTS["model"], None
    model_name = f"{OUTPUTS['model']} (final{' and best' if best_is_final else ''}, epoch {trained})"
    if best and not best_is_final and tf.io.gfile.exists(paths["best"]):
      name, model_name = OUTPUTS["best"], f"{OUTPUTS['best']} (best, epoch {best['epoch']})"
      last = {"file": OUTPUTS["model"], "epoch": trained,
              "final": reports.evaluate_splits(model, data.evaluation, data.counts)}
      with distribution.scope():
        reported = _load_for_evaluation(paths["best"], len(data.class_names))
    final = reports.report(
        reported, data.evaluation, data.counts, data.class_names, history,
        {k: v for k, v in paths.items() if k != "tensorboard" or _has_tensorboard()},
        where.multi_worker, best=best, model_name=model_name)
    if writes_suspects:
      suspects_lib.write(suspects_lib.find(reported, data.named, data.class_names,
                                           [s for s in suspects_lib.SPLITS if s in data.counts],
                                           config.suspects), paths["suspects"])
  # What a completed run leaves: metrics.json records it (and what a run with more epochs
  # continues from), then the duplicate best checkpoint and the backup go.
  # A re-run that trained nothing saved nothing: its state is the one it started from.
  saved = checkpoint.load(own_backup) or state or {}
  kept = {k: v for k, v in outputs.items()
          if k != "backup" and not (k == "best" and best_is_final)}
  content = write_metrics(history, final, {
      "outputs": kept,
      "best": best and {**best, "file": OUTPUTS["model"] if best_is_final else OUTPUTS["best"]},
      "resume": {k: saved[k] for k in RESUME_KEYS if k in saved},
      "final_model": name,
      "last_epoch_model": last,
  })
  if best_is_final:
    _remove(paths["best"])
  _remove(own_backup)
  return content


def _load_for_evaluation(path: str, num_classes: int) -> keras.Model:
  """A saved model, compiled with the run's loss and accuracy (weights only matter now)."""
  model = keras.models.load_model(path, compile=False, safe_mode=True)
  model.compile(loss=head.loss(num_classes), metrics=[head.accuracy(num_classes)])
  return model


def summary(content: dict) -> list[str]:
  """The lines that say what a finished run (metrics.json's `content`) measured, and on
  which model: the test split's metrics (else validation's, else training's) of the model
  to use, which epoch is the best, and the last epoch's model's metrics when it is another."""
  final = content["final"]
  shown = next((s for s in ("test", "validation") if final[s]), "train")
  result = final[shown]
  lines = [f"{shown.capitalize()} accuracy: {result['accuracy']:.1%} on {result['examples']} "
           f"images (loss {result['loss']:.3f}) of {content.get('final_model') or OUTPUTS['model']}."]
  best = content.get("best")
  if best:
    at = f"epoch {best['epoch']} ({best['monitor']} {best['value']:.3f})"
    if best.get("file") == OUTPUTS["model"]:
      lines.append(f"The best epoch is the last, {at}: {OUTPUTS['model']} holds it "
                   f"(no separate {OUTPUTS['best']}).")
    else:
      lines.append(f"{OUTPUTS['best']} is {at}.")
  last = content.get("last_epoch_model")
  if last:
    other = last["final"][shown]
    lines.append(f"{last['file']} (epoch {last['epoch']}, the last): {shown} accuracy "
                 f"{other['accuracy']:.1%} (loss {other['loss']:.3f}).")
  return lines


def _augments(config: RunConfig):
  """The augmentations the model applies (a list of names), or False for none: the
  config's choice, else the model's default."""
  augment = config.augment
  if augment is None:
    parameter = inspect.signature(models.get(config.model)).parameters.get("augment")
    augment = bool(parameter and parameter.default)
  return list(model_preprocessing.augmentation_names(augment)) or False


def _comparable(config: RunConfig, replicas: int = 1) -> dict:
  """The settings a resumed run must share with the interrupted one (not the epochs, where
  the folder is, nor whether the input runs on a tf.data service); with several replicas,
  their number too, since it sets the global batch."""
  settings = dataclasses.asdict(config)
  for free in ("epochs", "out", "data_service", "save_every", "best_checkpoint",
               "stall_timeout", "worker_timeout", "seed", "suspects"):
    settings.pop(free)
  if replicas != 1:
    settings["replicas"] = replicas
  return settings


_DATA_SETTINGS = {"data_class_names": "the data's class names",
                  "data_counts": "the data's examples per split and class",
                  "data_files": "the data's files (a digest of names and sizes)"}


def _setting_name(key: str) -> str:
  """How the user knows a compared setting: its command-line option, or what the data
  shows (class names and counts are in metrics.json)."""
  if key in _DATA_SETTINGS:
    return _DATA_SETTINGS[key]
  if key == "replicas":
    return "the number of replicas (devices training in step)"
  if key == "demo":
    return "the demo (no data option given)"
  return "--" + key.replace("_", "-")


def _compiled_model(config: RunConfig, data: training_data.TrainingData, seed: int,
                    chosen: accelerator.AcceleratorSettings) -> keras.Model:
  num_classes = len(data.class_names)
  options = {} if config.augment is None else {"augment": config.augment}
  model = models.build(config.model, (*data.image_size, data.channels), num_classes,
                       seed=seed, **options)
  model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=head.loss(num_classes), metrics=[head.accuracy(num_classes)],
                jit_compile=chosen.jit_compile,
                steps_per_execution=chosen.steps_per_execution)
  return model


def _agree_with_chief(distribution: tf.distribute.Strategy, where: strategy.Placement,
                      seed: int, state: Optional[dict], backup: str) -> int:
  """The chief's run seed, for every worker (a worker given no seed draws its own); fails
  on every worker alike unless all found the same finished epochs in the chief's backup."""
  rows = strategy.gather_from_workers(distribution, where, [seed, state["epoch"] if state else 0])
  epochs = [epoch for _, epoch in rows]
  if len(set(epochs)) > 1:
    raise ValueError(
        f"the workers found different finished epochs in {backup} "
        f"({', '.join(map(str, epochs))}): to resume, every worker must read the chief's output "
        "folder.")
  return rows[0][0]


def _callbacks(config: RunConfig, paths: dict, monitor: str) -> list:
  """Keras's own callbacks for the options: the run's one `fit` drives them."""
  callbacks = []
  if _has_tensorboard():
    callbacks.append(keras.callbacks.TensorBoard(paths["tensorboard"], write_graph=False))
  else:
    print("tensorboard is not installed: no TensorBoard logs.", flush=True)
  if config.best_checkpoint:
    callbacks.append(keras.callbacks.ModelCheckpoint(paths["best"], monitor=monitor,
                                                     save_best_only=True))
  if config.early_stopping:
    callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                   patience=config.early_stopping))
  if config.lr_schedule == "cosine":
    base, epochs = config.learning_rate, config.epochs
    callbacks.append(keras.callbacks.LearningRateScheduler(
        lambda epoch: base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))))
  elif config.lr_schedule == "plateau":
    callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5,
                                                       patience=2))
  # Appends: a resumed run continues the file (`_continue_csv` dropped unsaved rows).
  callbacks.append(training.CSVLogger(paths["history"], append=True))
  # A stalled input (a lost tf.data service worker, a hung file system) ends the run.
  callbacks.append(watchdog.InputWatchdog(
      config.stall_timeout, hint=f"The last saved state is in {paths['backup']}: run the "
      "same command to continue from it."))
  return callbacks


def finished_state(out: str) -> Optional[dict]:
  """The state a completed run in `out` left (as `checkpoint.load` gives a backup's), to
  evaluate it again or train it on: metrics.json's "resume" and history, the weights and
  the optimizer's state in model.keras. None when `out` holds no completed run."""
  path = os.path.join(out, OUTPUTS["metrics"])
  if not (tf.io.gfile.exists(path) and tf.io.gfile.exists(os.path.join(out, OUTPUTS["model"]))):
    return None
  with tf.io.gfile.GFile(path) as f:
    metrics = json.load(f)
  if not metrics.get("final") or not metrics.get("resume"):
    return None
  return {**metrics["resume"], "step": 0, "history": metrics["epochs"],
          "weights": OUTPUTS["model"]}


def _keep_best_so_far(history: list, monitor: str, paths: dict) -> None:
  """Before a completed run trains on: when its best epoch was the last, model.keras was its
  only copy, and is about to be replaced; model.best.keras keeps it."""
  best = reports.best_epoch(history, monitor)
  if (best and history and best["epoch"] == history[-1]["epoch"]
      and tf.io.gfile.exists(paths["model"]) and not tf.io.gfile.exists(paths["best"])):
    checkpoint.write_file(paths["best"], lambda local: tf.io.gfile.copy(
        paths["model"], local, overwrite=True))


def _remove(path: str) -> None:
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


def _has_tensorboard() -> bool:
  return importlib.util.find_spec("tensorboard") is not None


def _continue_csv(path: str, finished_epochs: int) -> None:
  """Keeps the rows of the `finished_epochs` a resumed run starts after (a row written
  just before a kill, for an epoch whose state was not saved, goes); a new run starts
  the file afresh."""
  rows = []
  if finished_epochs and tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      rows = list(csv.reader(io.StringIO(f.read(), newline="")))
    rows = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < finished_epochs]
  if rows:
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    tf.io.gfile.remove(path)  # `ram://` would append to the old content
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(text.getvalue())
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)
