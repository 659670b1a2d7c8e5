"""scripts/predict.py (over `petpipe.prediction`) classifies good files and folders, reports
unreadable ones without stopping, and loads models in Keras's safe mode."""

from __future__ import annotations

import csv
import json
import os
import struct
import zlib

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from petpipe import models
from petpipe import prediction
from petpipe.models import head
from petpipe.pipeline import ops
from petpipe.images import transform
from petpipe.scripts import predict
from tests.test_cloud_paths import to_ram

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16




def _pixels(label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
  """Cats are bright, dogs are dark: learnable in a few steps."""
  low, high = (170, 255) if label == 0 else (0, 85)
  return rng.integers(low, high, size=(size, size, 3)).astype(np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG that declares `width` x `height` pixels but holds almost no data."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
          + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
  """A grayscale cat/dog model trained on bright-vs-dark pictures, with classes.json."""
  keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  labels = np.arange(64) % 2
  images = np.stack([_pixels(int(label), rng)[..., :1] for label in labels])
  model = models.build("mlp", (SIZE, SIZE, 1), 2)
  model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=head.loss(2),
                metrics=[head.accuracy(2)])
  model.fit(images, labels, batch_size=16, epochs=5, verbose=0)
  directory = str(tmp_path_factory.mktemp("model"))
  model.save(os.path.join(directory, "model.keras"))
  with open(os.path.join(directory, "classes.json"), "w") as f:
    json.dump({"class_names": ["cat", "dog"], "image_size": [SIZE, SIZE], "channels": 1}, f)
  return directory


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
  """Good and bad files; the good ones at other sizes and in other formats than trained on."""
  root = tmp_path_factory.mktemp("images")
  rng = np.random.default_rng(1)
  paths = {}
  for name, label, fmt, size in (("cat.jpg", 0, "JPEG", 40), ("dog.png", 1, "PNG", 24),
                                 ("cat-cmyk.jpg", 0, "CMYK", 30), ("dog.gif", 1, "GIF", 20)):
    image = Image.fromarray(_pixels(label, rng, size))
    path = root / name
    if fmt == "CMYK":
      image.convert("CMYK").save(path, "JPEG")
    else:
      image.save(path, fmt)
    paths[name] = str(path)
  (root / "empty.jpg").write_bytes(b"")
  (root / "notes.jpg").write_text("not an image at all")
  (root / "bomb.png").write_bytes(_png_header_only(60000, 60000))
  for name in ("empty.jpg", "notes.jpg", "bomb.png"):
    paths[name] = str(root / name)
  folder = root / "folder" / "sub"
  folder.mkdir(parents=True)
  Image.fromarray(_pixels(1, rng)).save(folder / "b.png")
  Image.fromarray(_pixels(0, rng)).save(folder.parent / "a.jpg")
  (folder / "readme.txt").write_text("skipped: not an image name")
  paths["folder"] = str(folder.parent)
  return paths


def invoke(args):
  return CliRunner().invoke(predict.main, [str(a) for a in args])


def _results(stdout: str) -> dict:
  """{path: (label, probability)} from `path: label (p)` lines."""
  results = {}
  for line in stdout.splitlines():
    path, _, rest = line.rpartition(": ")
    label, probability = rest.split(" (")
    results[path] = (label, float(probability.rstrip(")")))
  return results


def test_good_files_get_their_label_and_probability(model_dir, images):
  names = ("cat.jpg", "dog.png", "cat-cmyk.jpg", "dog.gif")
  result = invoke(["--model", os.path.join(model_dir, "model.keras")] + [images[n] for n in names])
  assert result.exit_code == 0, result.output
  results = _results(result.stdout)
  assert list(results) == [images[n] for n in names]  # in the order given
  for name in names:
    label, probability = results[images[name]]
    assert label == name[:3]
    assert 0.5 <= probability <= 1.0


def test_a_folder_is_walked_in_sorted_order_and_only_images_are_read(model_dir, images):
  result = invoke(["--model", os.path.join(model_dir, "model.keras"), images["folder"]])
  assert result.exit_code == 0, result.output
  folder = images["folder"]
  results = _results(result.stdout)
  assert list(results) == [os.path.join(folder, "a.jpg"), os.path.join(folder, "sub", "b.png")]
  assert [label for label, _ in results.values()] == ["cat", "dog"]
  assert result.stderr == ""


def test_unreadable_files_are_reported_and_the_rest_classified(model_dir, images):
  bad = ("empty.jpg", "notes.jpg", "bomb.png")
  result = invoke(["--model", os.path.join(model_dir, "model.keras"), images["cat.jpg"],
                   *(images[n] for n in bad), os.path.join(os.path.dirname(images["cat.jpg"]),
                                                           "missing.jpg")])
  assert result.exit_code == 0, result.output
  assert list(_results(result.stdout)) == [images["cat.jpg"]]
  errors = dict(line.split(": error: ") for line in result.stderr.splitlines())
  # The reasons a build gives for the same files.
  assert errors[images["empty.jpg"]] == "empty: zero bytes"
  assert errors[images["notes.jpg"]] == "not_an_image: text or HTML, not an image"
  assert errors[images["bomb.png"]].startswith("too_many_pixels: ")
  assert errors[os.path.join(os.path.dirname(images["cat.jpg"]), "missing.jpg")] == (
      "unreadable: No such file or directory")


def test_nothing_classified_exits_non_zero(model_dir, images):
  result = invoke(["--model", os.path.join(model_dir, "model.keras"), images["empty.jpg"]])
  assert result.exit_code == 1
  assert result.stderr.splitlines()[-1] == "Error: no image classified (1 unreadable)."


def test_without_classes_json_the_labels_are_class_numbers(model_dir, images, tmp_path):
  lone = tmp_path / "model.keras"
  lone.write_bytes(open(os.path.join(model_dir, "model.keras"), "rb").read())
  result = invoke(["--model", lone, images["dog.png"]])
  assert result.exit_code == 0, result.output
  assert _results(result.stdout)[images["dog.png"]][0] == "1"


def test_missing_model_is_a_one_line_error(tmp_path, images):
  result = invoke(["--model", tmp_path / "none.keras", images["cat.jpg"]])
  assert result.exit_code == 2
  assert "Traceback" not in result.output
  assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
      f"Error: Invalid value for --model: {tmp_path / 'none.keras'} does not exist."]


def test_models_with_python_code_load_only_with_unsafe(tmp_path, images):
  inputs = keras.Input((SIZE, SIZE, 1))
  outputs = keras.layers.Dense(1, activation="sigmoid")(
      keras.layers.Flatten()(keras.layers.Lambda(lambda x: x / 255.0)(inputs)))
  path = str(tmp_path / "lambda.keras")
  keras.Model(inputs, outputs).save(path)
  refused = invoke(["--model", path, images["cat.jpg"]])
  assert refused.exit_code == 1
  assert "Traceback" not in refused.output
  assert "--unsafe" in refused.stderr.splitlines()[-1]
  allowed = invoke(["--model", path, "--unsafe", images["cat.jpg"]])
  assert allowed.exit_code == 0, allowed.output
  assert images["cat.jpg"] in _results(allowed.stdout)


def test_the_library_raises_ordinary_exceptions_not_click_ones(model_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    prediction.predict_files(str(tmp_path / "none.keras"), [])
  with pytest.raises(FileNotFoundError, match="does not exist"):
    prediction.predict_files(os.path.join(model_dir, "model.keras"), [],
                             classes_path=str(tmp_path / "none.json"))


def test_saved_preprocessing_is_applied_and_must_fit_the_model(model_dir, images, tmp_path):
  model_path = os.path.join(model_dir, "model.keras")
  saved = transform.Preprocessing((SIZE, SIZE), 1, jpeg_dct_scaling=False)
  classes = tmp_path / "classes.json"
  classes.write_text(json.dumps({"class_names": ["cat", "dog"],
                                 "preprocessing": saved.to_dict()}))
  predictor = prediction.Predictor.load(model_path, str(classes))
  assert predictor.preprocessing == saved
  [result] = predictor.predict([images["cat.jpg"]])
  assert result.label == "cat" and result.error is None
  expected = ops.normalize(transform.transform_bytes(
      open(images["cat.jpg"], "rb").read(), saved), "none").numpy()
  np.testing.assert_array_equal(prediction.load_image(images["cat.jpg"], saved), expected)
  classes.write_text(json.dumps({"preprocessing": dict(saved.to_dict(), image_size=[8, 8])}))
  with pytest.raises(ValueError, match="the model takes"):
    prediction.predict_files(model_path, [], classes_path=str(classes))


def _natural_jpegs(root, per_class: int = 8) -> None:
  """JPEGs of several sizes cut from a real photograph: the light left half is one class,
  the dark right half the other; sizes vary so that decodes use several DCT scales."""
  import matplotlib

  photo = Image.open(os.path.join(matplotlib.get_data_path(), "sample_data",
                                  "grace_hopper.jpg")).convert("RGB")
  rng = np.random.default_rng(3)
  for label, (left, right) in enumerate(((0, 256), (256, 512))):
    os.makedirs(os.path.join(root, f"class{label}"))
    for i in range(per_class):
      side = int(rng.integers(40, 250))
      x, y = int(rng.integers(left, right - 40)), int(rng.integers(0, 600 - side))
      crop = photo.crop((x, y, x + min(side, right - x), y + side))
      crop.save(os.path.join(root, f"class{label}", f"{i}.jpg"), quality=85)


@pytest.mark.slow
def test_predict_gives_the_probabilities_of_evaluating_the_test_split(tmp_path):
  """The served model sees the pixels the trained one saw: predicting the original test
  files equals running the model on the test split's batches from JPEG shards."""
  import petpipe.builders  # noqa: F401  (registers image_folder)
  import tensorflow_datasets as tfds

  from petpipe import experiment
  from petpipe import pipeline
  from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
  from petpipe.builders.folder_config import FolderConfig
  from petpipe.pipeline import input_pipeline

  root = str(tmp_path / "photos")
  _natural_jpegs(root)
  config = FolderConfig(name="photos", root=root, encoding="jpeg", balance="none",
                        split_percent=(50, 0, 50))
  builder = image_folder.Builder(config=config, data_dir=str(tmp_path / "data"))
  builder.download_and_prepare()
  folder = os.fspath(builder.data_dir)
  out = str(tmp_path / "out")
  experiment.run(experiment.RunConfig(
      shards=os.path.join(folder, "image_folder-train.tfrecord*"), model="mlp", epochs=1,
      batch_size=4, image_size=(24, 20), channels=1, seed=0, deterministic=True, out=out))

  model = keras.models.load_model(os.path.join(out, "model.keras"))
  test_files = sorted(tfds.builder_from_directory(folder).info.splits["test"].filepaths)
  test_files = [os.fspath(f) for f in test_files]
  eval_config = pipeline.PipelineConfig(image_size=(24, 20), channels=1, batch_size=4,
                                        shuffle_buffer=0, deterministic=True,
                                        normalize="none")
  batches = pipeline.from_shards(test_files, eval_config, training=False)
  evaluated = np.concatenate([head.probabilities(model.predict_on_batch(images))
                              for images, _ in batches])
  names = input_pipeline.read_filenames(test_files)
  assert len(names) == len(evaluated) >= 4
  results = list(prediction.predict_files(os.path.join(out, "model.keras"),
                                          [os.path.join(root, n) for n in names]))
  assert [r.error for r in results] == [None] * len(names)
  np.testing.assert_allclose([r.probability for r in results], evaluated.max(axis=-1),
                             rtol=0, atol=1e-6)


def test_files_and_folders_on_ram_get_the_predictions_of_the_local_ones(model_dir, images):
  model = os.path.join(model_dir, "model.keras")
  names = ("cat.jpg", "dog.png", "cat-cmyk.jpg", "empty.jpg", "folder")
  local = list(prediction.predict_files(model, [images[n] for n in names]))
  remote_root = to_ram(os.path.dirname(images["cat.jpg"]))
  remote = list(prediction.predict_files(model, [images[n].replace(
      os.path.dirname(images["cat.jpg"]), remote_root) for n in names]))
  assert [p.path.rsplit("/", 1)[-1] for p in remote] == [p.path.rsplit("/", 1)[-1] for p in local]
  assert [(p.label, p.probability, p.error) for p in remote] == [
      (p.label, p.probability, p.error) for p in local]


def test_predict_reads_a_model_on_ram_as_the_local_one(model_dir, images):
  local_model = os.path.join(model_dir, "model.keras")
  remote_model = to_ram(model_dir) + "/model.keras"  # classes.json beside it
  files = [images["cat.jpg"], images["dog.png"]]
  local = CliRunner().invoke(predict.main, ["--model", local_model, *files])
  remote = CliRunner().invoke(predict.main, ["--model", remote_model, *files])
  assert remote.exit_code == 0, remote.output
  assert remote.output == local.output and "cat.jpg: " in remote.output
def test_a_folder_is_listed_in_natural_order(model_dir, tmp_path):
  rng = np.random.default_rng(4)
  for name in ("Dog/10.png", "Dog/2.png", "Dog/1.png", "Dog 10/0.png", "Dog 9/0.png", "a.png"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(1, rng)).save(tmp_path / name)
  result = invoke(["--model", os.path.join(model_dir, "model.keras"), tmp_path])
  assert result.exit_code == 0, result.output
  assert [os.path.relpath(p, tmp_path) for p in _results(result.stdout)] == [
      "a.png", "Dog/1.png", "Dog/2.png", "Dog/10.png", "Dog 9/0.png", "Dog 10/0.png"]


def test_csv_and_json_hold_every_result_with_its_error(model_dir, images, tmp_path):
  given = [images["cat.jpg"], images["empty.jpg"], images["dog.png"]]
  model = os.path.join(model_dir, "model.keras")
  lines = invoke(["--model", model, *given])
  printed = _results(lines.stdout)
  as_csv = invoke(["--model", model, "--csv", tmp_path / "p.csv", *given])
  assert as_csv.exit_code == 0 and as_csv.stdout == lines.stdout
  with open(tmp_path / "p.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["path"] for r in rows] == given
  assert rows[1]["error"] == "empty: zero bytes" and rows[1]["label"] == ""
  for row in (rows[0], rows[2]):
    assert (row["label"], round(float(row["probability"]), 3)) == printed[row["path"]]
  as_json = invoke(["--model", model, "--json", *given])
  assert as_json.exit_code == 0
  results = json.loads(as_json.stdout)
  assert [r["path"] for r in results] == given
  assert results[1] == {"path": images["empty.jpg"], "label": None, "probability": None,
                        "error": "empty: zero bytes"}
  assert [r["label"] for r in results] == [rows[0]["label"], None, rows[2]["label"]]
