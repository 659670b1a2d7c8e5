"""scripts/predict.py classifies good files and folders, reports unreadable ones without
stopping, and loads models in Keras's safe mode."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
import zlib

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from petpipe import models
from petpipe.models import head

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16


def _load_predict():
  # scripts/ is not a package: load the command from its file.
  spec = importlib.util.spec_from_file_location(
      "predict_script", os.path.join(ROOT, "scripts", "predict.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


predict = _load_predict()


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
  assert errors[images["empty.jpg"]] == "empty file"
  assert "Unknown image file format" in errors[images["notes.jpg"]]
  assert "too large" in errors[images["bomb.png"]]
  assert "No such file" in errors[os.path.join(os.path.dirname(images["cat.jpg"]), "missing.jpg")]


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
