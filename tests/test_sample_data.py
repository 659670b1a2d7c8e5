"""Tests for the synthetic PetImages generator and its command line."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import struct
import zipfile
import zlib

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from petpipe import sample_data

SMALL = dict(per_class=6, min_size=16, max_size=48)
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "make_sample_data.py"


def _files(root) -> dict:
  """Relative path -> bytes of every file under `root`."""
  root = pathlib.Path(root)
  return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _by_kind(report: sample_data.SampleReport, class_name: str) -> dict:
  return {a.kind: a for a in report.anomalies if a.path.startswith(class_name + "/")}


def _read(report: sample_data.SampleReport, anomaly: sample_data.Anomaly) -> bytes:
  return pathlib.Path(report.root, anomaly.path).read_bytes()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> sample_data.SampleReport:
  root = tmp_path_factory.mktemp("sample")
  return sample_data.write_sample_folder(str(root), imbalance=1.5, seed=3, **SMALL)


@pytest.fixture(scope="module")
def script():
  spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_counts_follow_per_class_and_imbalance(sample):
  assert sample.counts == {"Cat": 6, "Dog": 9}
  usable = sum(e in ("kept", "transcoded", "repaired") for e in sample_data.ANOMALY_KINDS.values())
  assert sample.expected_counts() == {"Cat": 6 + usable, "Dog": 9 + usable}


def test_layout_numbers_good_images_then_anomalies(sample):
  assert sample.root.endswith("PetImages")
  numbered = len(sample_data.ANOMALY_KINDS) - 1  # Thumbs.db takes no number
  for name, count in sample.counts.items():
    names = set(os.listdir(os.path.join(sample.root, name)))
    assert names == {f"{i}.jpg" for i in range(count + numbered)} | {"Thumbs.db"}
  for anomaly in sample.anomalies:
    name, filename = anomaly.path.split("/")
    assert os.path.isfile(os.path.join(sample.root, name, filename))
    if anomaly.kind != "thumbs_db":
      assert int(filename[:-len(".jpg")]) >= sample.counts[name]


def test_every_kind_in_every_class_with_its_expectation(sample):
  for name in sample_data.CLASS_NAMES:
    kinds = _by_kind(sample, name)
    assert set(kinds) == set(sample_data.ANOMALY_KINDS)
    for kind, anomaly in kinds.items():
      assert anomaly.expected == sample_data.ANOMALY_KINDS[kind]
  expected = sample_data.ANOMALY_KINDS
  def kinds_expected(outcome: str) -> set:
    return {kind for kind, e in expected.items() if e == outcome}

  assert kinds_expected("kept") == {"grayscale", "progressive", "exif_only"}
  assert kinds_expected("skipped") == {"zero_byte", "truncated", "junk", "bomb"}
  assert kinds_expected("transcoded") == {
      "png_as_jpg", "gif_as_jpg", "bmp_as_jpg", "webp_as_jpg", "cmyk"}
  assert expected["extraneous_bytes"] == "repaired" and expected["thumbs_db"] == "ignored"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
  first = sample_data.write_sample_folder(str(tmp_path / "a"), seed=7, **SMALL)
  again = sample_data.write_sample_folder(str(tmp_path / "b"), seed=7, **SMALL)
  other = sample_data.write_sample_folder(str(tmp_path / "c"), seed=8, **SMALL)
  assert first.anomalies == again.anomalies
  files, files_again, files_other = _files(first.root), _files(again.root), _files(other.root)
  assert files == files_again
  assert files.keys() == files_other.keys()
  assert files["Cat/0.jpg"] != files_other["Cat/0.jpg"]
  changed = sum(files[k] != files_other[k] for k in files)
  assert changed > len(files) // 2


def test_good_images_decode_with_tensorflow_at_sizes_in_range(sample):
  for name, count in sample.counts.items():
    for index in range(count):
      data = pathlib.Path(sample.root, name, f"{index}.jpg").read_bytes()
      assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
      image = tf.io.decode_image(data, expand_animations=False)
      height, width, channels = image.shape
      assert channels == 3
      assert 16 <= height <= 48 and 16 <= width <= 48


def test_unreadable_anomalies(sample):
  for name in sample_data.CLASS_NAMES:
    kinds = _by_kind(sample, name)
    assert _read(sample, kinds["zero_byte"]) == b""
    truncated = _read(sample, kinds["truncated"])
    assert truncated[:2] == b"\xff\xd8" and not truncated.endswith(b"\xff\xd9")
    for kind in ("zero_byte", "truncated", "junk"):
      with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(_read(sample, kinds[kind]), expand_animations=False)
    thumbs = kinds["thumbs_db"]
    assert thumbs.path == f"{name}/Thumbs.db"
    with pytest.raises(Image.UnidentifiedImageError):
      Image.open(os.path.join(sample.root, thumbs.path))


@pytest.mark.parametrize("kind, signature, fmt", [
    ("png_as_jpg", b"\x89PNG\r\n\x1a\n", "PNG"),
    ("gif_as_jpg", b"GIF8", "GIF"),
    ("bmp_as_jpg", b"BM", "BMP"),
    ("webp_as_jpg", b"RIFF", "WEBP"),
])
def test_other_formats_named_jpg(sample, kind, signature, fmt):
  for name in sample_data.CLASS_NAMES:
    anomaly = _by_kind(sample, name)[kind]
    assert anomaly.path.endswith(".jpg")
    data = _read(sample, anomaly)
    assert data.startswith(signature)
    if fmt == "WEBP":
      assert data[8:12] == b"WEBP"
    with Image.open(os.path.join(sample.root, anomaly.path)) as image:
      assert image.format == fmt
      image.load()


def test_jpeg_variants(sample):
  for name in sample_data.CLASS_NAMES:
    kinds = _by_kind(sample, name)
    with Image.open(os.path.join(sample.root, kinds["cmyk"].path)) as image:
      assert (image.format, image.mode) == ("JPEG", "CMYK")
    with Image.open(os.path.join(sample.root, kinds["grayscale"].path)) as image:
      assert (image.format, image.mode) == ("JPEG", "L")
    progressive = _read(sample, kinds["progressive"])
    assert b"\xff\xc2" in progressive  # SOF2: progressive DCT
    exif_only = _read(sample, kinds["exif_only"])
    assert exif_only[2:4] == b"\xff\xe1" and exif_only[6:12] == b"Exif\x00\x00"
    assert b"\xff\xe0" not in exif_only[:20] and b"JFIF" not in exif_only
    with Image.open(os.path.join(sample.root, kinds["exif_only"].path)) as image:
      assert image.getexif()[0x010F] == "PetCam"
      image.load()


def test_extraneous_bytes_decode_with_tensorflow(sample):
  for name in sample_data.CLASS_NAMES:
    data = _read(sample, _by_kind(sample, name)["extraneous_bytes"])
    assert data.endswith(b"\xff\x00\xff\x00\xff\xd9")
    image = tf.io.decode_jpeg(data)
    assert image.shape[-1] == 3 and min(image.shape[:2]) >= 16


def test_bomb_header_declares_60000_squared(sample, monkeypatch):
  for name in sample_data.CLASS_NAMES:
    anomaly = _by_kind(sample, name)["bomb"]
    data = _read(sample, anomaly)
    assert anomaly.path.endswith(".jpg") and len(data) < 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (60000, 60000)
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")
    path = os.path.join(sample.root, anomaly.path)
    with pytest.raises(Image.DecompressionBombError):
      Image.open(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(path) as image:  # header only: nothing is decoded
      assert image.size == (60000, 60000)
    monkeypatch.undo()


def test_zip_matches_microsoft_layout_and_folder_bytes(tmp_path):
  zip_path = str(tmp_path / "kagglecatsanddogs_5340.zip")
  report = sample_data.write_sample_zip(zip_path, seed=5, **SMALL)
  folder = sample_data.write_sample_folder(str(tmp_path / "folder"), seed=5, **SMALL)
  assert (report.counts, report.anomalies) == (folder.counts, folder.anomalies)
  with zipfile.ZipFile(zip_path) as archive:
    names = archive.namelist()
    assert "readme[1].txt" in names and "CDLA-Permissive-2.0.pdf" in names
    assert "PetImages/Cat/0.jpg" in names and "PetImages/Dog/Thumbs.db" in names
    outside = [n for n in names if not n.startswith("PetImages/")]
    assert sorted(outside) == ["CDLA-Permissive-2.0.pdf", "readme[1].txt"]
    members = {n[len("PetImages/"):]: archive.read(n) for n in names
               if n.startswith("PetImages/") and not n.endswith("/")}
  assert members == _files(folder.root)
  again = str(tmp_path / "again.zip")
  sample_data.write_sample_zip(again, seed=5, **SMALL)
  assert pathlib.Path(zip_path).read_bytes() == pathlib.Path(again).read_bytes()


@pytest.mark.parametrize("kwargs", [
    dict(per_class=0), dict(min_size=0), dict(min_size=50, max_size=20),
    dict(imbalance=0.0), dict(imbalance=0.01, per_class=2), dict(seed=-1),
])
def test_bad_values_raise_before_writing(tmp_path, kwargs):
  with pytest.raises(ValueError):
    sample_data.write_sample_folder(str(tmp_path / "out"), **{**SMALL, **kwargs})
  with pytest.raises(ValueError):
    sample_data.write_sample_zip(str(tmp_path / "out.zip"), **{**SMALL, **kwargs})
  assert not os.listdir(tmp_path)


def test_refuses_to_mix_with_an_earlier_sample(tmp_path, script):
  sample_data.write_sample_folder(str(tmp_path), **SMALL)
  with pytest.raises(FileExistsError):
    sample_data.write_sample_folder(str(tmp_path), **SMALL)
  result = CliRunner().invoke(script.main, ["--out", str(tmp_path)])
  assert result.exit_code != 0 and result.output.startswith("Error:")


def test_no_brightness_threshold_or_class_mean_tells_cats_from_dogs(tmp_path):
  # The demo must be a task for a CNN: only the drawn shapes differ between the classes.
  report = sample_data.write_sample_folder(str(tmp_path), per_class=60, min_size=64,
                                           max_size=120, seed=11, anomalies=False)

  def pixels(name: str) -> np.ndarray:
    return np.stack([
        np.asarray(Image.open(os.path.join(report.root, name, f"{i}.jpg")).convert("L")
                   .resize((32, 32), Image.BILINEAR), np.float32).ravel()
        for i in range(60)
    ])

  cats, dogs = pixels("Cat"), pixels("Dog")
  brightness = np.concatenate([cats.mean(1), dogs.mean(1)])
  labels = np.array([0] * 60 + [1] * 60)
  threshold = max(max(((brightness > t) == labels).mean(), ((brightness <= t) == labels).mean())
                  for t in brightness)
  assert threshold <= 0.7  # the best threshold, chosen on the very images it is scored on
  means = np.stack([cats[:45].mean(0), dogs[:45].mean(0)])
  held_out = np.concatenate([cats[45:], dogs[45:]])
  distances = ((held_out[:, None, :] - means[None]) ** 2).sum(-1)
  assert (distances.argmin(1) == np.array([0] * 15 + [1] * 15)).mean() <= 0.75


def test_script_writes_folder_and_zip(tmp_path, script):
  runner = CliRunner()
  args = ["--out", str(tmp_path), "--per-class", "3", "--min-size", "16", "--max-size", "32"]
  result = runner.invoke(script.main, args + ["--imbalance", "2"])
  assert result.exit_code == 0, result.output
  assert result.output.count("\n") == 1
  assert "Cat: 3" in result.output and "Dog: 6" in result.output
  assert f"{2 * len(sample_data.ANOMALY_KINDS)} anomalies" in result.output
  assert os.path.isfile(tmp_path / "PetImages" / "Dog" / "5.jpg")
  result = runner.invoke(script.main, args + ["--zip", "--no-anomalies"])
  assert result.exit_code == 0, result.output
  assert "0 anomalies" in result.output
  assert zipfile.is_zipfile(tmp_path / "kagglecatsanddogs_5340.zip")


@pytest.mark.parametrize("bad", [
    ["--per-class", "0"], ["--min-size", "0"], ["--max-size", "-5"],
    ["--min-size", "60", "--max-size", "20"], ["--imbalance", "0"],
])
def test_script_rejects_bad_values(tmp_path, script, bad):
  result = CliRunner().invoke(script.main, ["--out", str(tmp_path)] + bad)
  assert result.exit_code != 0
  assert isinstance(result.exception, SystemExit)
  assert "Traceback" not in result.output
  assert result.output.strip().count("\n") == 0 and result.output.startswith("Error:")
