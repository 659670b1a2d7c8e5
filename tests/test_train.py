"""scripts/train.py end to end on tiny shards, folders and the reduced demo; bad input is a
one-line error; an interrupted run resumes to the same weights."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from petpipe import experiment
from petpipe import pipeline
from petpipe.models import determinism
from petpipe.models import preprocessing
from petpipe.models import training
from petpipe.pipeline import schema
from petpipe.scripts import train as train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "train.py")
CLASSES = ("cat", "dog")
# Beside these, model.best.keras when the best epoch is not the last (tests/test_run_outputs.py).
OUTPUT_FILES = ("model.keras", "history.csv", "classes.json", "metrics.json", "curves.png",
                "samples.png", "confusion.png")




def _picture(label: int, rng: np.random.Generator, size: int, channels: int = 1) -> np.ndarray:
  """Learnable: cats are bright with a dark square, dogs dark with a bright one."""
  image = rng.integers(150, 230, size=(size, size, channels)) if label == 0 else \
      rng.integers(20, 100, size=(size, size, channels))
  corner = rng.integers(0, size // 2)
  image[corner:corner + size // 3, corner:corner + size // 3] = 40 if label == 0 else 210
  return image.astype(np.uint8)


def write_shards(dataset_dir: str, counts=None, size: int = 16, num_shards: int = 2,
                 name: str = "tiny", seed: int = 0, class_names=CLASSES) -> str:
  """Writes TFDS-named raw shards and features.json; returns the training-shard glob."""
  counts = counts or {"train": 16, "validation": 6, "test": 6}
  os.makedirs(dataset_dir, exist_ok=True)
  feats = schema.features(schema.ImageStorage("raw", 1, (size, size)), class_names)
  feats.save_config(dataset_dir)
  rng = np.random.default_rng(seed)
  for split, count in counts.items():
    paths = [os.path.join(dataset_dir, f"{name}-{split}.tfrecord-{i:05d}-of-{num_shards:05d}")
             for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i in range(count):
      label = i % len(CLASSES)
      example = {schema.IMAGE: _picture(label, rng, size), schema.LABEL: label,
                 schema.FILENAME: f"{class_names[label]}/{split}-{i}.png"}
      writers[i % num_shards].write(feats.serialize_example(example))
    for writer in writers:
      writer.close()
  return os.path.join(dataset_dir, f"{name}-train.tfrecord*")


def write_folder(root: str, per_class: int = 6, size: int = 20) -> str:
  rng = np.random.default_rng(1)
  for label, name in enumerate(CLASSES):
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      Image.fromarray(_picture(label, rng, size, 3)).save(os.path.join(root, name, f"{i}.png"))
  return root


def invoke(args, **kwargs):
  return CliRunner().invoke(train_command.main, [str(a) for a in args], **kwargs)


def _assert_ok(result):
  assert result.exit_code == 0, result.output + repr(result.exception)


def _assert_one_line_error(result, fragment: str):
  assert result.exit_code != 0
  assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
  assert "Traceback" not in result.output
  errors = [line for line in result.output.splitlines() if line.startswith("Error")]
  assert len(errors) == 1, result.output
  assert fragment in errors[0], errors[0]


def _metrics(out) -> dict:
  with open(os.path.join(out, "metrics.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
  return write_shards(str(tmp_path_factory.mktemp("data") / "tiny" / "1.0.0"))


@pytest.fixture(scope="module")
def finished_run(shards, tmp_path_factory):
  """A finished two-epoch run on the tiny shards: (result, out)."""
  out = str(tmp_path_factory.mktemp("run") / "out")
  result = invoke(["--shards", shards, "--model", "mlp", "--epochs", 2, "--batch-size", 8,
                   "--seed", 1, "--out", out])
  return result, out


# ------------------------------------------------------------------------- outputs


@pytest.mark.slow
def test_shards_run_writes_every_output(finished_run):
  result, out = finished_run
  _assert_ok(result)
  for name in OUTPUT_FILES:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  for picture in ("curves.png", "samples.png", "confusion.png"):
    with Image.open(os.path.join(out, picture)) as image:
      assert image.format == "PNG" and min(image.size) > 100
  assert any(files for _, _, files in os.walk(os.path.join(out, "tensorboard")))
  assert "Test accuracy:" in result.output and out in result.output


@pytest.mark.slow
def test_metrics_json_has_the_documented_keys(finished_run):
  _, out = finished_run
  metrics = _metrics(out)
  assert set(metrics) == {"config", "class_names", "counts", "epochs", "final",
                          "images_per_second", "best", "outputs", "resume", "final_model",
                          "last_epoch_model"}
  # The best checkpoint: the first epoch of lowest validation loss, in model.keras when it is
  # the last.
  val_losses = [row["val_loss"] for row in metrics["epochs"]]
  best = 1 + val_losses.index(min(val_losses))
  file = "model.keras" if best == 2 else "model.best.keras"
  assert metrics["best"] == {"epoch": best, "monitor": "val_loss", "value": min(val_losses),
                             "file": file}
  assert os.path.exists(os.path.join(out, "model.best.keras")) == (best != 2)
  assert metrics["class_names"] == list(CLASSES)
  assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
  for row in metrics["epochs"]:
    assert set(row) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "examples",
                        "seconds", "images_per_second"}
    assert row["examples"] == 16  # counted by the model, not taken from the labels
    assert row["images_per_second"] > 0
  for split, examples in (("train", 16), ("validation", 6), ("test", 6)):
    final = metrics["final"][split]
    assert set(final) == {"loss", "accuracy", "examples", "images_per_second"}
    assert final["examples"] == examples and 0 <= final["accuracy"] <= 1
  assert metrics["counts"] == {"train": {"cat": 8, "dog": 8}, "validation": {"cat": 3, "dog": 3},
                               "test": {"cat": 3, "dog": 3}}
  assert metrics["images_per_second"]["train"] > 0 and metrics["images_per_second"]["test"] > 0
  config = metrics["config"]
  for option in ("shards", "val_shards", "test_shards", "dataset", "data_dir", "folder",
                 "data_service", "model", "epochs", "batch_size", "image_size", "channels",
                 "learning_rate", "seed", "deterministic", "class_weights", "mixed_precision",
                 "jit_compile", "steps_per_execution", "augment", "out", "accelerator",
                 "strategy"):
    assert option in config, option
  assert config["data_service"] is None
  assert config["strategy"] == {"name": "default", "workers": 1, "replicas": 1,
                                "global_batch_size": 8, "train_shard_policy": None}
  assert (config["model"], config["seed"], config["image_size"], config["channels"]) == \
      ("mlp", 1, [16, 16], 1)
  # "auto": on exactly when a GPU is visible.
  assert config["accelerator"]["mixed_precision"] is bool(tf.config.list_physical_devices("GPU"))
  assert config["mixed_precision"] == "auto"
  assert config["class_weights"] == "auto"
  assert config["class_weight_values"] == {"0": 1.0, "1": 1.0}
  assert config["augment"] is False  # the mlp's default


@pytest.mark.slow
def test_saved_model_and_classes_json_describe_the_data(finished_run):
  _, out = finished_run
  model = keras.models.load_model(os.path.join(out, "model.keras"), safe_mode=True)
  assert model.input_shape == (None, 16, 16, 1) and model.output_shape == (None, 1)
  with open(os.path.join(out, "classes.json")) as f:
    classes = json.load(f)
  assert {k: classes[k] for k in ("class_names", "image_size", "channels", "model")} == {
      "class_names": ["cat", "dog"], "image_size": [16, 16], "channels": 1, "model": "mlp"}
  # What prediction applies: the size and channels the model was trained at.
  assert classes["preprocessing"]["image_size"] == [16, 16]
  assert classes["preprocessing"]["channels"] == 1


@pytest.mark.slow
def test_explicit_splits_image_size_and_channels(tmp_path):
  train_glob = write_shards(str(tmp_path / "a"), {"train": 8}, name="a")
  other = write_shards(str(tmp_path / "b"), {"validation": 4, "test": 2}, name="b", seed=1)
  out = tmp_path / "out"
  result = invoke(["--shards", train_glob, "--val-shards", other.replace("train", "validation"),
                   "--test-shards", other.replace("train", "test"), "--model", "cnn",
                   "--epochs", 1, "--image-size", "24,20", "--channels", 3, "--out", out])
  _assert_ok(result)
  metrics = _metrics(out)
  assert {s: f and f["examples"] for s, f in metrics["final"].items()} == \
      {"train": 8, "validation": 4, "test": 2}
  model = keras.models.load_model(os.path.join(out, "model.keras"))
  assert model.input_shape == (None, 24, 20, 3)


def _split_by_hash(rel: str) -> str:
  """The split the builders' rule gives a file at `rel` (80/10/10), computed here anew."""
  point = int.from_bytes(hashlib.sha256(f"split:{rel}".encode()).digest()[:8], "big") / 2**64
  return "train" if point < 0.8 else "validation" if point < 0.9 else "test"


@pytest.mark.slow
def test_folder_runs_validate_and_test_on_files_fixed_by_the_folder_not_the_seed(tmp_path):
  folder = write_folder(str(tmp_path / "pets"), per_class=20)
  expected = {split: sum(_split_by_hash(f"{c}/{i}.png") == split for c in CLASSES for i in range(20))
              for split in ("train", "validation", "test")}
  for seed in (2, 3):
    out = tmp_path / f"out{seed}"
    result = invoke(["--folder", folder, "--model", "mlp", "--epochs", 1, "--image-size", 16,
                     "--seed", seed, "--out", out])
    _assert_ok(result)
    assert "Test accuracy:" in result.output
    metrics = _metrics(out)
    assert metrics["class_names"] == list(CLASSES)
    assert {s: f and f["examples"] for s, f in metrics["final"].items()} == expected


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """The no-argument demo, reduced: (result, working folder, cache folder)."""
  cwd, cache = tmp_path_factory.mktemp("demo"), tmp_path_factory.mktemp("cache")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(experiment.CACHE_ENV, str(cache))
    patch.setattr(experiment, "DEMO", experiment.DemoSettings(per_class=30, min_size=40,
                                                              max_size=60, epochs=1))
    patch.chdir(cwd)
    return invoke([]), cwd, cache


@pytest.mark.slow
def test_no_arguments_runs_the_demo(demo):
  result, cwd, cache = demo
  _assert_ok(result)
  out = cwd / "outputs" / "demo"
  for name in OUTPUT_FILES:
    assert os.path.exists(out / name), name
  metrics = _metrics(out)
  assert metrics["config"]["demo"] is True and metrics["config"]["model"] == "cnn"
  assert metrics["config"]["seed"] == experiment.DEMO.seed == 0  # no --seed: the same run for all
  assert metrics["config"]["image_size"] == [100, 100]  # pet_images/gray100
  assert metrics["class_names"] == ["cat", "dog"]
  assert metrics["final"]["test"]["examples"] > 0
  assert "Test accuracy:" in result.output and os.path.join("outputs", "demo") in result.output
  assert os.path.isdir(cache / "demo" / "sample-30-40-60" / "PetImages" / "Cat")
  # One epoch, so the best is the final model: one model file (the demo's cnn), no backup.
  assert not (out / "model.best.keras").exists() and not (out / "backup").exists()
  assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) <= 30 * 2**20


@pytest.mark.slow
def test_tfds_dataset_source_reads_a_built_dataset(demo, tmp_path):
  _, cwd, cache = demo
  data_dir = cache / "demo" / "data-sample-30-40-60"
  out = tmp_path / "out"
  result = invoke(["--dataset", "pet_images/gray100", "--data-dir", data_dir, "--model", "mlp",
                   "--epochs", 1, "--image-size", 32, "--out", out])
  _assert_ok(result)
  metrics = _metrics(out)
  built = _metrics(cwd / "outputs" / "demo")["counts"]
  assert metrics["counts"] == built  # the same dataset as the demo's shards
  assert metrics["config"]["image_size"] == [32, 32]


class _Calls(keras.callbacks.Callback):
  """Counts the calls a user's callback receives."""

  def __init__(self):
    super().__init__()
    self.train_begins, self.epochs, self.rates = 0, [], []

  def on_train_begin(self, logs=None):
    self.train_begins += 1

  def on_epoch_end(self, epoch, logs=None):
    self.epochs.append(epoch)
    self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))


@pytest.mark.slow
def test_one_fit_drives_a_users_callback_the_cosine_schedule_and_the_csv_log(shards, tmp_path):
  calls = _Calls()
  out = str(tmp_path / "out")
  metrics = experiment.run(experiment.RunConfig(
      shards=shards, model="mlp", epochs=3, batch_size=8, seed=2, lr_schedule="cosine",
      learning_rate=0.01, out=out), callbacks=[calls])
  assert calls.train_begins == 1 and calls.epochs == [0, 1, 2]  # one fit, every epoch
  assert calls.rates == pytest.approx([0.01, 0.0075, 0.0025])  # cos decay, per epoch
  with open(os.path.join(out, "history.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
  assert [float(r["loss"]) for r in rows] == pytest.approx(
      [row["loss"] for row in metrics["epochs"]])
  assert metrics["best"]["epoch"] in (1, 2, 3)


class _Diverge(keras.callbacks.Callback):
  """Makes the last epoch's updates huge, so its model is worse than an earlier one."""

  def __init__(self, last_epoch: int):
    super().__init__()
    self.last_epoch = last_epoch

  def on_epoch_begin(self, epoch, logs=None):
    if epoch == self.last_epoch:
      self.model.optimizer.learning_rate.assign(50.0)


@pytest.mark.slow
def test_test_metrics_are_those_of_the_model_the_user_is_told_to_use(shards, tmp_path):
  out = str(tmp_path / "out")
  metrics = experiment.run(experiment.RunConfig(
      shards=shards, model="mlp", epochs=3, batch_size=8, seed=4, deterministic=True,
      learning_rate=0.01, out=out), callbacks=[_Diverge(last_epoch=2)])
  assert metrics["best"]["epoch"] < 3
  assert metrics["final_model"] == "model.best.keras"
  test = pipeline.from_shards(shards.replace("-train.", "-test."), pipeline.PipelineConfig(
      image_size=16, channels=1, batch_size=8, normalize="none"), training=False)
  for name, final in (("model.best.keras", metrics["final"]),
                      ("model.keras", metrics["last_epoch_model"]["final"])):
    model = keras.models.load_model(os.path.join(out, name))
    model.compile(loss="binary_crossentropy", metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    expected = model.evaluate(test, verbose=0, return_dict=True)
    assert final["test"]["loss"] == pytest.approx(expected["loss"], rel=1e-5), name
    assert final["test"]["accuracy"] == pytest.approx(expected["accuracy"]), name
  assert metrics["last_epoch_model"]["epoch"] == 3
  lines = experiment.summary(metrics)
  assert lines[0].startswith("Test accuracy:") and lines[0].endswith(" of model.best.keras.")
  assert lines[1].startswith(f"model.best.keras is epoch {metrics['best']['epoch']} (val_loss")
  assert lines[2].startswith("model.keras (epoch 3, the last): test accuracy")


# ------------------------------------------------------------------------- resuming


FINISHED_ARGS = ["--model", "mlp", "--epochs", 2, "--batch-size", 8, "--seed", 1]


@pytest.fixture
def finished_copy(finished_run, tmp_path) -> str:
  """A copy of the finished two-epoch run's output folder, to resume."""
  _, out = finished_run
  copy = str(tmp_path / "out")
  shutil.copytree(out, copy)
  return copy


@pytest.mark.slow
def test_a_finished_run_continues_to_more_epochs(shards, finished_copy):
  result = invoke(["--shards", shards, *FINISHED_ARGS, "--epochs", 3, "--out", finished_copy])
  _assert_ok(result)
  assert "Continuing from epoch 3, step 0 of 2 (2 of 3 epochs done" in result.output
  assert [row["epoch"] for row in _metrics(finished_copy)["epochs"]] == [1, 2, 3]
  with open(os.path.join(finished_copy, "history.csv")) as f:
    assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused_naming_them(shards, finished_copy):
  args = ["--shards", shards, *FINISHED_ARGS, "--out", finished_copy]
  _assert_one_line_error(invoke(args + ["--model", "cnn", "--batch-size", 4]),
                         "holds a run with other settings: --batch-size (4 now, 8 there); "
                         '--model ("cnn" now, "mlp" there)')


@pytest.mark.slow
def test_a_refused_resume_names_only_settings_the_user_set(shards, finished_copy):
  # The finished run was given --seed 1; this one gives no seed (the saved one would be
  # reused) but another model.
  result = invoke(["--shards", shards, "--model", "cnn", "--epochs", 3, "--batch-size", 8,
                   "--out", finished_copy])
  _assert_one_line_error(result, 'other settings: --model ("cnn" now, "mlp" there). Use')
  assert "seed" not in result.output
  _assert_one_line_error(invoke(["--shards", shards, *FINISHED_ARGS, "--seed", 7,
                                 "--out", finished_copy]), "--seed (7 now, 1 there)")


def _position(out) -> tuple[int, int, int]:
  """(finished epochs, steps of the next one, steps per epoch) saved in out/backup."""
  try:
    with open(os.path.join(out, "backup", "state.json")) as f:
      state = json.load(f)
    return state["epoch"], state["step"], state["steps"] or 0
  except (OSError, ValueError, KeyError):
    return 0, 0, 0


STEPS, EPOCHS = 8, 2  # 32 training examples in batches of 4
INTERRUPTED = os.path.join(ROOT, "tests", "train_interrupted.py")
# Every in-model augmentation (random layers with state), the optimizer, metric sums,
# callbacks with state and the input order: all must resume exactly.
RESUMED_ARGS = ["--model", "mlp", "--augment", ",".join(preprocessing.AUGMENTATIONS),
                "--epochs", EPOCHS, "--batch-size", 4, "--seed", 5, "--deterministic",
                "--lr-schedule", "plateau", "--early-stopping", 5]


@pytest.fixture(scope="module")
def resume_shards(tmp_path_factory) -> str:
  return write_shards(str(tmp_path_factory.mktemp("resume") / "data"),
                      {"train": 4 * STEPS, "validation": 8, "test": 4})


@pytest.fixture(scope="module")
def uninterrupted(resume_shards, tmp_path_factory):
  """The run the interrupted ones must end equal to, started in the background (in its own
  process: --deterministic switches op determinism on for the whole process); call to wait."""
  folder = tmp_path_factory.mktemp("uninterrupted")
  out, log = str(folder / "out"), folder / "stderr.txt"
  with open(log, "w") as stderr:  # a file, not a pipe: nothing blocks on a full pipe
    process = subprocess.Popen([sys.executable, SCRIPT, "--shards", resume_shards,
                                *map(str, RESUMED_ARGS), "--out", out],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)

  def wait() -> str:
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    return out

  yield wait
  if process.poll() is None:
    process.kill()
    process.wait()


def _train_until(shards, out, *, epoch=None, batch=None, signal_name="KILL", save_every=1):
  """The run, interrupted right after batch `batch` of epoch `epoch` (none: to its end)."""
  args = ["--shards", shards, *map(str, RESUMED_ARGS), "--save-every", str(save_every), "--out", out]
  command = [sys.executable, INTERRUPTED, str(epoch), str(batch), signal_name] if epoch is not None \
      else [sys.executable, SCRIPT]
  return subprocess.run(command + args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _assert_same_run(whole, resumed):
  """Bit-identical weights, per-epoch metrics and history.csv."""
  a = keras.models.load_model(os.path.join(whole, "model.keras"))
  b = keras.models.load_model(os.path.join(resumed, "model.keras"))
  for left, right in zip(a.weights, b.weights, strict=True):
    np.testing.assert_array_equal(np.asarray(left), np.asarray(right), err_msg=left.path)
  for key in ("loss", "accuracy", "val_loss", "val_accuracy", "examples"):
    assert [row[key] for row in _metrics(whole)["epochs"]] == \
        [row[key] for row in _metrics(resumed)["epochs"]], key
  with open(os.path.join(whole, "history.csv")) as f, \
      open(os.path.join(resumed, "history.csv")) as g:
    assert f.read() == g.read()  # one row per epoch, none lost or repeated


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_its_augmentation_layers_random_state(resume_shards, uninterrupted,
                                                                             tmp_path):
  out = str(tmp_path / "out")
  killed = _train_until(resume_shards, out, epoch=1, batch=4)  # step 5 of epoch 2, step 4 saved
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  assert _position(out) == (1, 4, STEPS)
  with open(os.path.join(out, "backup", "state.json")) as f:
    saved = json.load(f)["seed_states"]
  # The random layers had drawn for 4 batches of the epoch: their state is not the one the
  # epoch starts from, which is what a resume must not fall back to.
  at_epoch_start = [[determinism.derive(5, 1, index), 0] for index in range(len(saved))]
  assert len(saved) >= 6 and saved != at_epoch_start
  finished = _train_until(resume_shards, out)
  assert finished.returncode == 0, finished.stderr
  assert f"Continuing from epoch 2, step 4 of {STEPS}" in finished.stdout
  _assert_same_run(uninterrupted(), out)


@pytest.mark.slow
def test_a_run_stopped_between_saves_trains_each_unsaved_batch_once_more_and_no_other(
    resume_shards, uninterrupted, tmp_path):
  out = str(tmp_path / "out")
  # Saved every 3 steps: stopped after step 5 of the first epoch, step 3 is the one on disk,
  # so steps 4 and 5 are trained again and the first 3 batches skipped.
  stopped = _train_until(resume_shards, out, epoch=0, batch=4, signal_name="INT", save_every=3)
  assert stopped.returncode == 130, stopped.stderr
  assert "Run the same command to continue" in stopped.stderr and "Traceback" not in stopped.stderr
  assert _position(out) == (0, 3, STEPS)
  # Resumed, then killed again after step 7 of the second epoch (saved: step 6).
  killed = _train_until(resume_shards, out, epoch=1, batch=6, save_every=3)
  assert killed.returncode == -signal.SIGKILL, killed.stderr
  assert f"Continuing from epoch 1, step 3 of {STEPS}" in killed.stdout
  assert _position(out) == (1, 6, STEPS)
  finished = _train_until(resume_shards, out, save_every=3)
  assert finished.returncode == 0, finished.stderr
  assert f"Continuing from epoch 2, step 6 of {STEPS}" in finished.stdout
  _assert_same_run(uninterrupted(), out)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, fragment", [
    (["--shards", "/nonexistent/x-train.tfrecord*"], "matches no files"),
    (["--folder", "/nonexistent/pets"], "is not a folder"),
    (["--folder", ".", "--model", "resnet"], "Unknown model 'resnet'"),
    (["--folder", ".", "--batch-size", 0], "--batch-size"),
    (["--folder", ".", "--epochs", -1], "--epochs"),
    (["--folder", ".", "--image-size", 0], "expected positive N or H,W"),
    (["--folder", ".", "--image-size", "32,0"], "expected positive N or H,W"),
    (["--folder", ".", "--learning-rate", 0], "--learning-rate"),
    (["--folder", ".", "--channels", 2], "--channels"),
    (["--folder", ".", "--augment", "flip,sharpen"], "augment must name some of"),
    (["--folder", ".", "--lr-schedule", "step"], "--lr-schedule"),
    (["--folder", ".", "--dataset", "pet_images"], "one data source"),
    (["--val-shards", "x*"], "go with shards"),
    (["--folder", ".", "--data-service", "127.0.0.1:5050"], "not a folder"),
    (["--data-service", "http://127.0.0.1:5050"], "grpc://"),
    (["--data-service", "127.0.0.1"], "HOST:PORT"),
    (["--shards", "x-train.tfrecord*", "--data-service", "grpc://127.0.0.1:1"],
     "no tf.data service dispatcher answers at grpc://127.0.0.1:1"),
])
def test_bad_input_is_a_one_line_error(args, fragment, tmp_path):
  _assert_one_line_error(invoke(args + ["--out", tmp_path / "out"]), fragment)


def test_shards_of_several_splits_are_refused(shards, tmp_path):
  everything = os.path.join(os.path.dirname(shards), "tiny-*.tfrecord*")
  _assert_one_line_error(invoke(["--shards", everything, "--out", tmp_path / "out"]),
                         "several splits (test, train, validation)")


@pytest.mark.parametrize("split", ["validation", "test"])
def test_training_on_a_held_out_split_is_refused(shards, split, tmp_path):
  held_out = shards.replace("-train.", f"-{split}.")
  _assert_one_line_error(invoke(["--shards", held_out, "--out", tmp_path / "out"]),
                         f"are the {split} split")


@pytest.mark.parametrize("option", ["--val-shards", "--test-shards"])
def test_evaluating_on_the_training_files_is_refused(shards, option, tmp_path):
  _assert_one_line_error(invoke(["--shards", shards, option, shards, "--out", tmp_path / "out"]),
                         "both match")


@pytest.mark.slow
@pytest.mark.parametrize("split, other", [("validation", "test"), ("test", "validation")])
def test_a_held_out_split_allowed_for_training_is_never_evaluated_on(shards, split, other, tmp_path):
  out = tmp_path / "out"
  _assert_ok(invoke(["--shards", shards.replace("-train.", f"-{split}."), "--train-on-held-out",
                     "--model", "mlp", "--epochs", 1, "--batch-size", 8, "--out", out]))
  metrics = _metrics(out)
  # The files trained on are that split's 6 (not the train split's 16), and only the other
  # held-out split is evaluated.
  assert metrics["counts"] == {"train": {"cat": 3, "dog": 3}, other: {"cat": 3, "dog": 3}}
  assert metrics["final"][split] is None and metrics["final"][other]["examples"] == 6


def test_unwritable_out_is_a_one_line_error(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  _assert_one_line_error(invoke(["--folder", tmp_path, "--out", blocker / "out"]),
                         "cannot write to")


def test_folder_with_one_class_is_a_one_line_error(tmp_path):
  only = tmp_path / "data" / "only"
  only.mkdir(parents=True)
  for i in range(10):
    Image.fromarray(np.full((24, 24, 3), 20 * i, np.uint8)).save(only / f"{i}.jpg")
  _assert_one_line_error(invoke(["--folder", tmp_path / "data", "--out", tmp_path / "out"]),
                         "at least 2 classes")


_TWO_WORKERS = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                           "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("tf_config, args, fragment", [
    ("{not json", ["--folder", "."], "TF_CONFIG is not valid JSON"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}}), ["--folder", "."],
     "only chief and worker tasks"),
    (_TWO_WORKERS, ["--shards", "x*", "--data-service", "127.0.0.1:5050"],
     "for a single training process"),
    (_TWO_WORKERS, [], "the demo builds its data on one machine"),
])
def test_bad_tf_config_combinations_are_one_line_errors(tf_config, args, fragment, tmp_path,
                                                       monkeypatch):
  # Refused before any strategy is created, so nothing tries to reach the cluster.
  monkeypatch.setenv("TF_CONFIG", tf_config)
  _assert_one_line_error(invoke(args + ["--out", tmp_path / "out"]), fragment)


def test_unknown_tfds_dataset_is_a_one_line_error(tmp_path):
  result = invoke(["--dataset", "no_such_dataset_xyz", "--data-dir", tmp_path,
                   "--out", tmp_path / "out"])
  _assert_one_line_error(result, "no built no_such_dataset_xyz")


def test_class_weights_are_inverse_frequency():
  assert training.class_weights([10, 10]) == {0: 1.0, 1: 1.0}
  assert training.class_weights([30, 10]) == pytest.approx({0: 40 / 60, 1: 40 / 20})
  assert training.class_weights([5, 0, 5]) == {0: 1.0, 1: 1.0, 2: 1.0}
