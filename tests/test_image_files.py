"""One way to read an image file: the builders, the folder loader (`image_dataset_from_directory`)
and prediction find, check and decode files through `petpipe.images`, so they agree on the
files of a messy folder and on every pixel of every format."""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe import pipeline
from petpipe import prediction
from petpipe.builders import folder_builder
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.images import errors
from petpipe.images import transform
from petpipe.images import validate_files
from tests import fault_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = (20, 24)  # (height, width) of the files and of every output: no resize blurs the test
LUMA = np.float32([0.299, 0.587, 0.114])


def _smooth(rng, height=SIZE[0], width=SIZE[1]) -> np.ndarray:
  """A smooth RGB picture (JPEG keeps it close) with a random colour gradient."""
  y, x = np.mgrid[0:height, 0:width]
  base = rng.integers(30, 200, 3)
  slope = rng.integers(-4, 5, (2, 3))
  return np.clip(base + y[..., None] * slope[0] + x[..., None] * slope[1], 0, 255).astype(np.uint8)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, fmt, **options)
  return buffer.getvalue()


def _format_files(rng) -> dict:
  """{relative path: bytes}: every format and variant the project accepts, at SIZE but one
  large JPEG that decodes at a reduced DCT scale."""
  rgb = lambda: Image.fromarray(_smooth(rng))
  noise = lambda mode: Image.fromarray(rng.integers(0, 256, (*SIZE, len(mode)), np.uint8), mode)
  h, w = SIZE
  frames = [noise("RGB") for _ in range(2)]
  return {
      "a/jpeg_rgb.jpg": _save(rgb(), "JPEG", quality=92),
      "a/jpeg_gray.jpg": _save(rgb().convert("L"), "JPEG"),
      "a/jpeg_cmyk.jpg": _save(rgb().convert("CMYK"), "JPEG"),
      "a/jpeg_large.jpg": _save(Image.fromarray(_smooth(rng, 4 * h, 4 * w)), "JPEG"),
      "a/png_rgba.png": _save(noise("RGBA"), "PNG"),
      "a/png_16bit.png": _save(Image.fromarray((rng.random(SIZE) * 65535).astype(np.uint16)), "PNG"),
      "a/png_palette.png": _save(noise("RGB").convert("P", palette=Image.Palette.ADAPTIVE,
                                                      colors=16), "PNG", transparency=0),
      "a/gif_animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
      "b/bmp_24.bmp": _save(noise("RGB"), "BMP"),
      "b/bmp_1bit.bmp": _save(noise("RGB").convert("1"), "BMP"),
      "b/bmp_palette8.bmp": _save(noise("RGB").convert("P"), "BMP"),
      "b/bmp_4bit.bmp": fault_corpus._bmp_4bit(rng, w, h),
      "b/bmp_rle8.bmp": fault_corpus._bmp_rle8(rng, w, h),
      "b/bmp_16bit.bmp": fault_corpus._bmp_16bit(rng, w, h),
      "b/webp_rgb.webp": _save(rgb(), "WEBP", quality=90),
      "b/webp_rgba_lossless.webp": _save(noise("RGBA"), "WEBP", lossless=True),
  }


# Lossless files whose pixels Pillow gives independently (a 16-bit PNG Pillow clips, and two
# builds of libwebp may round a lossy WebP differently).
LOSSLESS = ("a/png_rgba.png", "a/png_palette.png", "a/gif_animated.gif", "b/bmp_24.bmp",
            "b/bmp_1bit.bmp", "b/bmp_palette8.bmp", "b/bmp_4bit.bmp", "b/bmp_rle8.bmp",
            "b/bmp_16bit.bmp", "b/webp_rgba_lossless.webp")


@pytest.fixture(scope="module")
def formats_root(tmp_path_factory) -> str:
  root = tmp_path_factory.mktemp("formats") / "root"
  for name, data in _format_files(np.random.default_rng(17)).items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  return str(root)


def _build(root, out, **overrides) -> image_folder.Builder:
  fields = dict(name="t", root=str(root), encoding="raw", image_size=list(SIZE), channels=3,
                balance="none", split_percent=(100, 0, 0), allow_empty_classes=True)
  fields.update(overrides)
  builder = image_folder.Builder(config=FolderConfig(**fields), data_dir=str(out))
  builder.download_and_prepare()
  return builder


def _manifest(builder) -> dict:
  return {r["path"]: r for r in folder_builder.read_manifest(builder.data_dir)}


def _loaded(root, **kwargs) -> dict:
  """{path relative to root: float32 pixels} from the folder loader, one file at a time."""
  ds = pipeline.image_dataset_from_directory(root, image_size=SIZE, shuffle=False,
                                             batch_size=None, verbose=False, **kwargs)
  return {os.path.relpath(p, root).replace(os.sep, "/"): image.numpy()
          for p, (image, _) in zip(ds.file_paths, ds)}


@pytest.mark.parametrize("channels", [1, 3])
def test_the_folder_loader_prediction_and_a_raw_build_give_the_same_uint8_pixels(
    formats_root, tmp_path, channels):
  names = sorted(_format_files(np.random.default_rng(0)))
  builder = _build(formats_root, tmp_path / "out", channels=channels)
  built = {e["image/filename"].decode(): e["image"]
           for e in tfds.as_numpy(builder.as_dataset(split="train"))}
  color_mode = "grayscale" if channels == 1 else "rgb"
  loaded = _loaded(formats_root, color_mode=color_mode, fast_decode=True)
  preprocessing = transform.Preprocessing(SIZE, channels)
  predicted = {n: prediction.load_image(os.path.join(formats_root, n), preprocessing)
               for n in names}
  assert sorted(built) == sorted(loaded) == names
  for name in names:
    assert built[name].dtype == predicted[name].dtype == np.uint8, name
    np.testing.assert_array_equal(built[name], predicted[name], err_msg=name)
    np.testing.assert_array_equal(loaded[name], predicted[name].astype(np.float32), err_msg=name)


@pytest.mark.parametrize("channels", [1, 3])
def test_lossless_formats_give_pillows_pixels_and_rounded_luma(formats_root, channels):
  loaded = _loaded(formats_root, color_mode="grayscale" if channels == 1 else "rgb",
                   fast_decode=True)
  for name in LOSSLESS:
    with Image.open(os.path.join(formats_root, name)) as image:
      rgb = np.asarray(image.convert("RGB"), np.float64)
    if channels == 3:
      np.testing.assert_array_equal(loaded[name], rgb, err_msg=name)
    else:  # whole values, each the nearest to the exact BT.601 luma (float32 sums may tie)
      luma = rgb @ LUMA.astype(np.float64)
      assert np.all(loaded[name] == np.round(loaded[name])), name
      assert np.abs(loaded[name][..., 0] - luma).max() <= 0.5 + 1e-4, name


def test_a_grayscale_load_then_an_rgb_load_of_one_folder_gives_each_its_own_pixels(tmp_path):
  colour = (200, 100, 50)
  gray = round(float(np.float32(colour) @ LUMA))  # 124
  for cls in ("a", "b"):
    (tmp_path / cls).mkdir()
    for fmt in ("GIF", "BMP", "PNG", "WEBP"):
      Image.new("RGB", SIZE[::-1], colour).save(tmp_path / cls / f"x.{fmt.lower()}", fmt,
                                                **({"lossless": True} if fmt == "WEBP" else {}))
  for fast_decode in (True, False):
    first = _loaded(str(tmp_path), color_mode="grayscale", fast_decode=fast_decode)
    second = _loaded(str(tmp_path), color_mode="rgb", fast_decode=fast_decode)
    assert len(first) == len(second) == 8
    for name in first:
      assert np.all(first[name] == gray), name
      assert np.all(second[name] == np.float32(colour)), name


def test_predict_lists_and_reads_webp_files_in_a_folder(formats_root):
  found = [path for path, _ in prediction.found_files([formats_root])]
  webps = [p for p in found if p.endswith(".webp")]
  assert len(webps) == 2
  assert prediction.load_image(webps[0], transform.Preprocessing(SIZE, 3)).shape == (*SIZE, 3)


def _good_folder(root, per_class=3, seed=0) -> None:
  rng = np.random.default_rng(seed)
  for cls in ("cat", "dog"):
    os.makedirs(os.path.join(root, cls), exist_ok=True)
    for i in range(per_class):
      Image.fromarray(_smooth(rng)).save(os.path.join(root, cls, f"{i}.jpg"))


def _refused_alike(root, name: str, tmp_path, **config) -> str:
  """The one reason the build, the folder loader and prediction give for `name` (relative)."""
  built = _manifest(_build(root, tmp_path / "out", **config))[name]["reason"]
  loader = pipeline.image_dataset_from_directory(str(root), image_size=SIZE, verbose=False,
                                                 seed=0, **config.get("loader", {}))
  loaded = loader.skip_reasons[os.path.join(str(root), *name.split("/"))]
  with pytest.raises(prediction.UnreadableImage) as predicted:
    prediction.load_image(os.path.join(str(root), *name.split("/")),
                          transform.Preprocessing(SIZE, 3))
  assert built == loaded == str(predicted.value)
  return built


def test_a_tiff_named_jpg_is_refused_alike_by_the_build_the_loader_and_predict(tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  Image.new("RGB", (30, 30), (9, 9, 9)).save(root / "cat" / "scan.jpg", "TIFF")
  assert _refused_alike(root, "cat/scan.jpg", tmp_path) == "unsupported_format: TIFF"


@pytest.mark.timeout(180, method="thread")
def test_a_named_pipe_is_never_opened_by_the_build_the_loader_or_predict(tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  os.mkfifo(root / "cat" / "pipe.jpg")
  reason = _refused_alike(root, "cat/pipe.jpg", tmp_path)
  assert reason == "not_a_regular_file: a named pipe (FIFO), never read"
  predicted = {p.rsplit(os.sep, 1)[-1]: p for p, _ in prediction.found_files([str(root)])}
  assert "pipe.jpg" in predicted  # listed, so that predict reports it


@pytest.mark.timeout(180, method="thread")
def test_symlink_loops_with_follow_links_store_and_load_each_picture_once(tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  os.symlink(".", root / "cat" / "loop")  # one loop
  os.makedirs(root / "dog" / "sub")
  os.symlink("..", root / "dog" / "sub" / "up")  # and another: together exponential before
  os.symlink(os.path.join("..", "cat"), root / "dog" / "cats")  # another class's folder
  builder = _build(root, tmp_path / "out", follow_links=True)
  stored = sorted(e["image/filename"].decode() for e in tfds.as_numpy(builder.as_dataset(split="train")))
  assert stored == [f"{c}/{i}.jpg" for c in ("cat", "dog") for i in range(3)]
  manifest = _manifest(builder)
  assert manifest["cat/loop/"]["reason"].startswith("symlink_loop: ")
  assert manifest["dog/sub/up/"]["reason"].startswith("symlink_loop: ")
  assert manifest["dog/cats/"]["reason"].startswith("same_folder: ")
  loaded = pipeline.image_dataset_from_directory(str(root), follow_links=True, image_size=8,
                                                 verbose=False, shuffle=False)
  assert [os.path.relpath(p, root) for p in loaded.file_paths] == stored
  assert loaded.skip_reasons[str(root / "cat" / "loop") + "/"].startswith("symlink_loop: ")


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_reason_by_all_three(tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  bad = os.path.join(os.fsencode(str(root / "cat")), b"caf\xe9.jpg")
  with open(bad, "wb") as f:
    f.write(_save(Image.new("RGB", (30, 30)), "JPEG"))
  builder = _build(root, tmp_path / "out")
  assert _manifest(builder)["cat/caf\\xe9.jpg"]["reason"].startswith("bad_name: ")
  assert builder.info.splits["train"].num_examples == 6
  loader = pipeline.image_dataset_from_directory(str(root), image_size=8, verbose=False, seed=0)
  assert loader.skip_reasons[str(root / "cat" / "caf\\xe9.jpg")].startswith("bad_name: ")
  results = {os.path.basename(p): reason for p, reason in prediction.found_files([str(root)])}
  assert results["caf\\xe9.jpg"].startswith("bad_name: ")


def test_predict_and_the_loader_skip_a_file_over_max_file_bytes_without_reading_it(tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  huge = root / "cat" / "video.jpg"
  with open(huge, "wb") as f:
    f.write(b"\xff\xd8\xff\xe0")
    f.truncate(3 * 2**30)  # 3 GiB, sparse: reading it whole would take 3 GiB of RAM
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  with pytest.raises(prediction.UnreadableImage, match="^too_large: more than max_file_bytes"):
    prediction.load_image(str(huge), transform.Preprocessing(SIZE, 3))
  loader = pipeline.image_dataset_from_directory(str(root), image_size=8, verbose=False, seed=0)
  assert loader.skip_reasons[str(huge)].startswith("too_large: ")
  grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
  assert grown_kib < 512 * 1024


def test_files_beside_the_class_folders_and_folders_left_out_are_in_the_manifest_and_card(
    tmp_path):
  root = tmp_path / "root"
  _good_folder(str(root))
  Image.new("RGB", (30, 30)).save(root / "stray.jpg")
  (root / "notes.txt").write_text("about the data")
  os.makedirs(root / "bird")
  Image.new("RGB", (30, 30)).save(root / "bird" / "0.jpg")
  builder = _build(root, tmp_path / "out", class_names=["cat", "dog"])
  manifest = _manifest(builder)
  assert (manifest["stray.jpg"]["status"], manifest["stray.jpg"]["reason"]) == (
      "ignored", "not in a class folder")
  assert manifest["notes.txt"]["reason"] == "not in a class folder"
  assert (manifest["bird/"]["status"], manifest["bird/"]["reason"]) == (
      "ignored", "folder not in class_names")
  card = builder.info.metadata["card"]
  assert card["ignored_by_reason"] == {"not in a class folder": 2, "folder not in class_names": 1}
  assert card["ignored_folders"] == ["bird"]
  loader = pipeline.image_dataset_from_directory(str(root), image_size=8, verbose=False, seed=0)
  assert loader.skip_reasons[str(root / "stray.jpg")] == "not in a class folder"


def test_another_config_of_the_same_source_reuses_its_verdicts_until_a_file_changes(
    tmp_path, monkeypatch):
  root = tmp_path / "root"
  _good_folder(str(root))
  (root / "dog" / "empty.jpg").write_bytes(b"")
  validated = []
  real = validate_files.iter_validated_pixels  # what a build calls (a chunk at a time)
  monkeypatch.setattr(validate_files, "iter_validated_pixels",
                      lambda *a, **k: validated.append(1) or real(*a, **k))
  first = _build(root, tmp_path / "out", name="raw")
  second = _build(root, tmp_path / "out", name="jpeg", encoding="jpeg", image_size=None)
  assert len(validated) == 1  # the second build read the first one's verdicts.jsonl
  assert _manifest(second)["dog/empty.jpg"] == _manifest(first)["dog/empty.jpg"]
  assert second.info.splits["train"].num_examples == 6
  (root / "dog" / "empty.jpg").write_bytes(_save(Image.new("RGB", (30, 30)), "JPEG"))
  third = _build(root, tmp_path / "out", name="gray", channels=1)
  assert len(validated) == 2 and third.info.splits["train"].num_examples == 7


def test_importing_the_library_changes_no_warning_filter_or_log_level():
  code = """
import logging, warnings
import keras, tensorflow as tf, tensorflow_datasets as tfds
from absl import logging as absl_logging
before = (list(warnings.filters), tf.get_logger().level, absl_logging.get_verbosity(),
          logging.getLogger().level)
import petpipe.builders, petpipe.pipeline, petpipe.images.validation, petpipe.prediction
after = (list(warnings.filters), tf.get_logger().level, absl_logging.get_verbosity(),
         logging.getLogger().level)
assert before == after, [x for x in after[0] if x not in before[0]]
print("ok")
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-2000:]


def test_an_error_becomes_one_line_without_tensorflows_decorations():
  with pytest.raises(tf.errors.InvalidArgumentError) as decode_error:
    tf.io.decode_image(b"not an image")
  line = errors.one_line(decode_error.value)
  assert line.startswith("Unknown image file format") and "{{" not in line and "[Op:" not in line
  assert "\n" not in line
  assert errors.one_line(FileNotFoundError(2, "No such file or directory", "x.jpg")) == (
      "No such file or directory")
  try:
    try:
      raise OSError(28, "No space left on device")
    except OSError as e:
      raise ValueError("cannot save the run") from e
  except ValueError as wrapped:
    assert errors.one_line(wrapped) == "cannot save the run (No space left on device)"
  assert errors.one_line(ValueError("")) == "ValueError"
