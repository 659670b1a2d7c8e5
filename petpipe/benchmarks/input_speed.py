"""Input speed, side by side: every way of feeding the same pictures to Keras, in one run.

On generated PetImages-shaped folders (default 5,000 good images plus the real set's
kinds of broken files), each loader delivers the same thing: one full epoch of batches
of 32 100x100 grayscale images with labels, float32 in [0, 1] (uint8 for the `_uint8`
variants, what training on an accelerator consumes: the model normalises on the device).
Each loader runs in a fresh process (`python -m petpipe.benchmarks.input_speed child ...`),
so its peak RSS is its own, best of `repeats`.

Picture sets, the JPEG loaders run on each:

* generated: the sample JPEGs (250-500 px, ~32 KB), mostly noise, so entropy decoding
  dominates and DCT scaling gains little;
* natural: the same files, names and broken files, every good picture replaced by a
  PetImages-sized crop of a real photograph (`natural_pictures`).

JPEG loaders:

  tutorial            PIL -> Python list -> numpy, then batches (generated set only);
  keras               `keras.utils.image_dataset_from_directory`, on a copy of the folder
                      without the files it crashes on;
  folder_loader       `pipeline.image_dataset_from_directory`, on the folder as it is;
  folder_loader_fast  the same with `fast_decode=True`;
  shards_jpeg         `pipeline.from_dataset_dir` on this project's `original` JPEG shards;
  shards_jpeg_uint8   the same with `normalize="none"`;
  ceiling_full        (a) the decode ceiling: the shards' JPEG bytes held in RAM,
                      `tf.io.decode_jpeg` at full scale + the project's resize, in a
                      parallel tf.data map over all cores;
  ceiling_scaled      (b) the same, each image decoded at the largest DCT scale still
                      covering 100x100 (`decode.ratio_for_size`, read beforehand; one
                      map per scale, so no per-image branching is timed).

Raw loaders, over the `gray100` shards (5,000 images) and over the same records repeated
`RAW_SCALE` times into shards of the same format (set "raw10x", read through the shards
glob, as `train --shards` does):

  shards_raw          `pipeline.from_dataset_dir` on the raw 100x100 shards;
  shards_raw_uint8    the same with `normalize="none"`;
  minimal_raw         (c) a minimal tf.data loop: interleave, batch, `parse_example`,
                      `decode_raw`, cast;
  minimal_raw_uint8   (c) without the cast;
  fixed_length        (d) `tf.data.FixedLengthRecordDataset` over the same pixels (and a
                      label byte) in one flat file.

Times include building the loader (indexing, checking files) but not building shards,
which is reported apart; the ceilings start their clock once the bytes are in RAM. Each
run also records the seconds from building the loader (`from_dataset_dir(...)`, with
TensorFlow imported) to its first batch. `rss=True` adds the memory proof: peak RSS while
streaming N and 10xN raw images (each in a fresh process) and shard bytes against it.

    from petpipe.benchmarks import input_speed
    report = input_speed.run(input_speed.InputSpeedConfig(images=300, loaders=("keras",)))
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from petpipe.benchmarks import goals as goals_lib

_MODULE = "petpipe.benchmarks.input_speed"

PICTURE_SETS = ("generated", "natural")
JPEG_LOADERS = ("tutorial", "keras", "folder_loader", "folder_loader_fast", "shards_jpeg",
                "shards_jpeg_uint8", "ceiling_full", "ceiling_scaled")
RAW_LOADERS = ("shards_raw", "shards_raw_uint8", "minimal_raw", "minimal_raw_uint8",
               "fixed_length")
LOADERS = JPEG_LOADERS + RAW_LOADERS
# The tutorial is the slow baseline: once, on the generated set, is enough.
GENERATED_ONLY = ("tutorial",)
# Loaders that ship uint8, as training on an accelerator consumes it.
UINT8_LOADERS = ("shards_jpeg_uint8", "shards_raw_uint8", "minimal_raw_uint8")
# The raw sets: the gray100 shards of the generated set, and their records RAW_SCALE times.
RAW_SCALE = 10
RAW_SHARDS = 16
IMAGE_SIZE = 100
BATCH_SIZE = 32
# Sample anomalies `keras.utils.image_dataset_from_directory` decodes; it crashes on the others
# (empty, cut off, junk, bomb, WebP, and GIF/BMP/CMYK for grayscale).
KERAS_DECODES = ("png_as_jpg", "exif_only", "grayscale", "progressive", "extraneous_bytes")
# (loader, reference, at least this ratio of images/s), as "set/loader", both from one run.
GOALS = (
    ("generated/shards_jpeg", "generated/ceiling_scaled", 0.9),
    ("natural/shards_jpeg", "natural/ceiling_scaled", 0.9),
    ("generated/shards_jpeg", "generated/keras", 1.0),
    ("natural/shards_jpeg", "natural/keras", 1.0),
    ("generated/folder_loader_fast", "generated/ceiling_scaled", 0.85),
    ("natural/folder_loader_fast", "natural/ceiling_scaled", 0.85),
    ("raw/shards_raw", "raw/minimal_raw", 1.0),
    ("raw10x/shards_raw", "raw10x/minimal_raw", 1.0),
)
# The same ratios timed as a user's epoch is: from the first element requested (iterator
# and first batch included, the loader's construction not), best of the runs.
GOALS_FROM_REQUEST = (
    ("natural/shards_jpeg", "natural/keras", 1.0),
    ("natural/shards_jpeg", "natural/ceiling_scaled", 0.9),
    ("raw/shards_raw", "raw/minimal_raw", 1.0),
    ("raw10x/shards_raw", "raw10x/minimal_raw", 1.0),
)
# (loader, at most this many seconds from building it to its first batch), fastest run.
FIRST_BATCH_GOALS = (
    ("generated/shards_jpeg", 0.15),
    ("natural/shards_jpeg", 0.15),
    ("raw/shards_raw", 0.15),
)
# What each set's ratios are measured against.
REFERENCES = {"generated": ("keras", "ceiling_scaled"), "natural": ("keras", "ceiling_scaled"),
              "raw": ("minimal_raw",), "raw10x": ("minimal_raw",)}
RSS_SCALE = 10
RSS_SHARDS = 16


def peak_rss_mb() -> float:
  """This process's peak resident memory (VmHWM; ru_maxrss where /proc is missing)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
  """This process's resident memory now (VmRSS): after imports, the baseline to grow from."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return peak_rss_mb()


# Loaders: each returns an iterable of (images, labels) batches, built inside the timing. ----


def tutorial(paths: dict) -> object:
  import numpy as np
  from PIL import Image

  images, labels = [], []
  for label, name in enumerate(paths["class_names"]):
    folder = os.path.join(paths["folder"], name)
    for file in sorted(os.listdir(folder)):
      try:
        with Image.open(os.path.join(folder, file)) as image:
          images.append(np.asarray(image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE))))
        labels.append(label)
      except Exception:  # The tutorial skips whatever Pillow cannot read.
        continue
  x = np.asarray(images, np.float32)[..., np.newaxis] / 255.0
  y = np.asarray(labels, np.int32)
  order = np.random.default_rng(0).permutation(len(x))
  return ((x[order[i:i + BATCH_SIZE]], y[order[i:i + BATCH_SIZE]])
          for i in range(0, len(x), BATCH_SIZE))


def keras_loader(paths: dict) -> object:
  import keras

  return keras.utils.image_dataset_from_directory(
      paths["keras_folder"], color_mode="grayscale", image_size=(IMAGE_SIZE, IMAGE_SIZE),
      batch_size=BATCH_SIZE, verbose=False)


def folder_loader(paths: dict, fast_decode: bool = False) -> object:
  from petpipe import pipeline

  return pipeline.image_dataset_from_directory(
      paths["folder"], color_mode="grayscale", image_size=(IMAGE_SIZE, IMAGE_SIZE),
      batch_size=BATCH_SIZE, verbose=False, fast_decode=fast_decode)


def _shards(dataset_dir: str, normalize: str = "0-1") -> object:
  from petpipe import pipeline

  config = pipeline.PipelineConfig(image_size=IMAGE_SIZE, channels=1, batch_size=BATCH_SIZE,
                                   normalize=normalize)
  return pipeline.from_dataset_dir(dataset_dir, "train", config)


def _record_files(dataset_dir: str) -> list[str]:
  return sorted(glob.glob(os.path.join(dataset_dir, "*-train.tfrecord*")))


def _parse_spec() -> dict:
  import tensorflow as tf

  from petpipe.pipeline import schema

  return {schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
          schema.LABEL: tf.io.FixedLenFeature([], tf.int64)}


def minimal_raw(paths: dict, cast: bool = True) -> object:
  import tensorflow as tf

  from petpipe.pipeline import schema

  spec = _parse_spec()

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    pixels = tf.reshape(tf.io.decode_raw(parsed[schema.IMAGE], tf.uint8),
                        (-1, IMAGE_SIZE, IMAGE_SIZE, 1))
    return (tf.cast(pixels, tf.float32) / 255.0 if cast else pixels), parsed[schema.LABEL]

  return (tf.data.Dataset.from_tensor_slices(_record_files(paths["raw_dir"]))
          .interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=False)
          .batch(BATCH_SIZE)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


# A flat file's record: one label byte, then the 100x100x1 pixels.
FLAT_RECORD_BYTES = 1 + IMAGE_SIZE * IMAGE_SIZE


def fixed_length(paths: dict) -> object:
  import tensorflow as tf

  def parse(records):
    values = tf.io.decode_raw(records, tf.uint8)
    pixels = tf.reshape(values[:, 1:], (-1, IMAGE_SIZE, IMAGE_SIZE, 1))
    return tf.cast(pixels, tf.float32) / 255.0, tf.cast(values[:, 0], tf.int64)

  return (tf.data.FixedLengthRecordDataset(paths["flat_file"], FLAT_RECORD_BYTES,
                                           buffer_size=1 << 20)
          .batch(BATCH_SIZE)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def jpeg_bytes_in_ram(dataset_dir: str) -> tuple[list, list]:
  """The encoded images and labels of a built dataset's train split, read into Python."""
  import tensorflow as tf

  from petpipe.pipeline import schema

  spec = _parse_spec()
  records = tf.data.TFRecordDataset(_record_files(dataset_dir)).batch(1024).map(
      lambda s: tf.io.parse_example(s, spec))
  images, labels = [], []
  for batch in records.as_numpy_iterator():
    images += list(batch[schema.IMAGE])
    labels += list(batch[schema.LABEL])
  return images, labels


def _decoded(images: list, labels: list, ratio: int) -> object:
  """A parallel map: JPEG bytes -> decode at 1/`ratio` (one fixed ratio) -> the resize."""
  import tensorflow as tf

  from petpipe.images import transform

  def decode(encoded, label):
    image = tf.io.decode_jpeg(encoded, channels=1, ratio=ratio)
    return transform.resize(image, (IMAGE_SIZE, IMAGE_SIZE)) / 255.0, label

  return tf.data.Dataset.from_tensor_slices((images, labels)).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)


def _ceiling(groups: dict) -> object:
  """Batches of the `_decoded` maps of {ratio: (images, labels)}, all running at once.

  The groups are drawn from in proportion (`choose_from_datasets`), so every group's map
  works ahead all along; one after the other, each group would start cold.
  """
  import numpy as np
  import tensorflow as tf

  from petpipe.pipeline import input_pipeline

  ratios = sorted(groups)
  parts = [_decoded(*groups[ratio], ratio) for ratio in ratios]
  # Group k's j-th image sits at (j + 0.5) / n_k of the way: a fixed, even interleave.
  position = np.concatenate([(np.arange(len(groups[r][0])) + 0.5) / len(groups[r][0])
                             for r in ratios])
  group = np.concatenate([np.full(len(groups[r][0]), k, np.int64) for k, r in enumerate(ratios)])
  choice = tf.data.Dataset.from_tensor_slices(group[np.argsort(position, kind="stable")])
  dataset = tf.data.Dataset.choose_from_datasets(parts, choice)
  dataset = dataset.batch(BATCH_SIZE).prefetch(tf.data.AUTOTUNE)
  # The best tf.data options known here (one thread per op, a private pool), as the
  # loaders measured against it use: a ceiling must not be held back by its own settings.
  dataset = dataset.with_options(input_pipeline.pipeline_options(deterministic=False))
  # A ceiling: the bytes are in RAM and the dataset is built; only decoding is timed.
  dataset.untimed_seconds = time.perf_counter()
  return dataset


def ceiling_full(paths: dict) -> object:
  return _ceiling({1: jpeg_bytes_in_ram(paths["jpeg_dir"])})


def ceiling_scaled(paths: dict) -> object:
  import tensorflow as tf

  from petpipe.images import decode

  groups: dict = {}
  for image, label in zip(*jpeg_bytes_in_ram(paths["jpeg_dir"])):
    height, width = (int(v) for v in tf.image.extract_jpeg_shape(image).numpy()[:2])
    ratio = decode.ratio_for_size(height, width, (IMAGE_SIZE, IMAGE_SIZE))
    group = groups.setdefault(ratio, ([], []))
    group[0].append(image)
    group[1].append(label)
  return _ceiling(groups)


BUILDERS: dict[str, Callable] = {
    "tutorial": tutorial,
    "keras": keras_loader,
    "folder_loader": folder_loader,
    "folder_loader_fast": lambda paths: folder_loader(paths, fast_decode=True),
    "shards_jpeg": lambda paths: _shards(paths["jpeg_dir"]),
    "shards_jpeg_uint8": lambda paths: _shards(paths["jpeg_dir"], "none"),
    "ceiling_full": ceiling_full,
    "ceiling_scaled": ceiling_scaled,
    "shards_raw": lambda paths: _shards(paths["raw_dir"]),
    "shards_raw_uint8": lambda paths: _shards(paths["raw_dir"], "none"),
    "minimal_raw": minimal_raw,
    "minimal_raw_uint8": lambda paths: minimal_raw(paths, cast=False),
    "fixed_length": fixed_length,
}


# What each loader imports before its clock starts: import time is not loading time.
IMPORTS = {"tutorial": ("numpy", "PIL.Image"), "keras": ("keras",)}


def run_loader(name: str, paths: dict) -> dict:
  """Builds loader `name` and streams one epoch: images, seconds, images/s, seconds to the
  first batch, peak RSS."""
  for module in IMPORTS.get(name, ("tensorflow", "petpipe.pipeline")):
    importlib.import_module(module)
  dtype = "uint8" if name in UINT8_LOADERS else "float32"
  start = time.perf_counter()
  batches = BUILDERS[name](paths)
  # The ceilings start their clock once the bytes are in RAM.
  start = getattr(batches, "untimed_seconds", start)
  images, first_batch, first_images = 0, None, 0
  requested = time.perf_counter()  # the user's clock: iterator, first batch, the epoch
  for batch_images, batch_labels in batches:
    if first_batch is None:
      first_batch = time.perf_counter() - start
      first_images = int(batch_images.shape[0])
    assert tuple(batch_images.shape[1:]) == (IMAGE_SIZE, IMAGE_SIZE, 1), batch_images.shape
    assert str(batch_images.dtype) in (dtype, f"<dtype: '{dtype}'>"), batch_images.dtype
    assert len(batch_labels) == len(batch_images)
    images += int(batch_images.shape[0])
  end = time.perf_counter()
  seconds = end - start
  # The rate once streaming: start-up (tracing, opening files, filling the shuffle buffer)
  # is a large share of a 5,000-image epoch and a small one of a real dataset's.
  streaming = (images - first_images) / max(seconds - first_batch, 1e-9)
  return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
          "first_batch_seconds": first_batch, "after_first_batch_per_s": streaming,
          "from_request_per_s": images / (end - requested),
          "peak_rss_mb": peak_rss_mb()}


def run_stream(dataset_dir: str) -> dict:
  """Streams one epoch of raw shards as `shards_raw` does; for the memory proof."""
  from petpipe import pipeline  # noqa: F401  (imported before the baseline is read)

  baseline = current_rss_mb()
  result = run_loader("shards_raw", {"raw_dir": dataset_dir})
  result["baseline_rss_mb"] = baseline
  result["shard_bytes"] = sum(
      os.path.getsize(os.path.join(dataset_dir, f)) for f in os.listdir(dataset_dir)
      if ".tfrecord" in f)
  return result


def in_fresh_process(args: list[str]) -> dict:
  """Runs this module's worker with `args` in a new Python process; returns its JSON answer.

  The worker is reached by module name, not by file, so it runs wherever petpipe is installed.
  """
  out = subprocess.run([sys.executable, "-m", _MODULE, *args], check=True,
                       stdout=subprocess.PIPE, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
  return json.loads(out.strip().splitlines()[-1])


# Data ---------------------------------------------------------------------------------


def _keras_copy(folder: str, keras_folder: str, anomalies: dict, class_names) -> None:
  """Hard links of `folder` without the files Keras crashes on."""
  if os.path.isdir(keras_folder):
    return
  for name in class_names:
    os.makedirs(os.path.join(keras_folder, name))
    for file in os.listdir(os.path.join(folder, name)):
      kind = anomalies.get(f"{name}/{file}")
      if kind is None or kind in KERAS_DECODES:
        os.link(os.path.join(folder, name, file), os.path.join(keras_folder, name, file))


def _build(folder: str, data_dir: str, name: str, encoding: str,
           image_size: Optional[int], channels: int) -> tuple[str, float]:
  """Builds `folder` with the image_folder builder (reused when built); (dir, seconds)."""
  from petpipe.builders.folder_builder import FolderConfig
  from petpipe.builders.image_folder.image_folder_dataset_builder import Builder

  # Config names differ from the builder's own "original" and "gray100", which TFDS reserves.
  config = FolderConfig(name=name, root=folder, encoding=encoding, image_size=image_size,
                        channels=channels, balance="none", split_percent=(100, 0, 0))
  builder = Builder(config=config, data_dir=data_dir)
  start = time.perf_counter()
  builder.download_and_prepare()
  return os.fspath(builder.data_dir), time.perf_counter() - start


def _picture_set(root: str, folder: str, anomalies: dict, jpeg: bool) -> tuple[dict, dict]:
  """A picture set's paths (folder, Keras-safe copy, `original` JPEG shards if `jpeg`) and
  the seconds its builds took."""
  from petpipe import sample_data

  class_names = list(sample_data.CLASS_NAMES)
  keras_folder = os.path.join(root, "keras_safe")
  _keras_copy(folder, keras_folder, anomalies, class_names)
  paths = {"folder": folder, "keras_folder": keras_folder, "class_names": class_names}
  seconds = {}
  if jpeg:
    paths["jpeg_dir"], seconds["original"] = _build(
        folder, os.path.join(root, "tfds"), "bench_original", "jpeg", None, 3)
  return paths, seconds


def write_flat_file(raw_dir: str, path: str, times: int = 1) -> str:
  """The raw records of `raw_dir` as fixed-length records (label byte + pixels), `times` over."""
  import tensorflow as tf

  from petpipe.pipeline import schema

  if os.path.exists(path):
    return path
  spec = _parse_spec()
  records = tf.data.TFRecordDataset(_record_files(raw_dir)).batch(1024).map(
      lambda s: tf.io.parse_example(s, spec))
  chunks = []
  for batch in records.as_numpy_iterator():
    for image, label in zip(batch[schema.IMAGE], batch[schema.LABEL]):
      chunks.append(bytes([label]) + image)
  with open(path + ".tmp", "wb") as f:
    for _ in range(times):
      f.write(b"".join(chunks))
  os.replace(path + ".tmp", path)
  return path


def repeat_shards(raw_dir: str, folder: str, times: int, shards: int = RAW_SHARDS) -> str:
  """`raw_dir`'s train records, `times` over, in `shards` TFRecord files of the same format
  (and its features.json), named so that the shards glob `*-train.tfrecord*` finds them."""
  import tensorflow as tf

  done = os.path.join(folder, "features.json")
  if os.path.exists(done):
    return folder
  shutil.rmtree(folder, ignore_errors=True)
  os.makedirs(folder)
  serialized = list(tf.data.TFRecordDataset(_record_files(raw_dir)).as_numpy_iterator())
  writers = [tf.io.TFRecordWriter(os.path.join(
      folder, f"bench-train.tfrecord-{i:05d}-of-{shards:05d}")) for i in range(shards)]
  for i in range(times * len(serialized)):
    writers[i % shards].write(serialized[i % len(serialized)])
  for writer in writers:
    writer.close()
  # Written last: its presence says the shards are complete.
  shutil.copyfile(os.path.join(raw_dir, "features.json"), done)
  return folder


def prepare_data(work: str, images: int, picture_sets: Sequence[str], raw_sets: Sequence[str],
                 jpeg: bool = True, log: Callable[[str], None] = print) -> tuple[dict, dict]:
  """Paths of each set's data ("set" -> {name: path}), built once and reused from `work`,
  and the seconds each build took ("set/config" -> seconds; ~0 when reused).

  The generated folder is always written (the other sets derive from it); a picture set's
  `original` JPEG shards are built when `jpeg`, the `gray100` shards when a raw set is asked.
  """
  from petpipe.benchmarks import natural_pictures
  from petpipe import sample_data

  root = os.path.join(work, f"sample_{images}")
  folder = os.path.join(root, sample_data.ROOT_NAME)
  report_path = os.path.join(root, "report.json")
  if not os.path.exists(report_path):
    shutil.rmtree(root, ignore_errors=True)
    log(f"Writing {images} sample images (250-500 px) plus anomalies to {folder} ...")
    report = sample_data.write_sample_folder(root, per_class=images // 2, min_size=250,
                                             max_size=500, seed=0)
    with open(report_path, "w") as f:
      json.dump({"anomalies": {a.path: a.kind for a in report.anomalies}}, f)
  with open(report_path) as f:
    anomalies = json.load(f)["anomalies"]

  data, build_seconds = {}, {}
  if "generated" in picture_sets:
    log("Preparing the generated pictures' shards ...")
    data["generated"], seconds = _picture_set(root, folder, anomalies, jpeg)
    build_seconds.update({f"generated/{k}": v for k, v in seconds.items()})
  if "natural" in picture_sets:
    natural_root = os.path.join(work, f"natural_{images}")
    natural_folder = os.path.join(natural_root, sample_data.ROOT_NAME)
    done = os.path.join(natural_root, "done")
    if not os.path.exists(done):
      shutil.rmtree(natural_root, ignore_errors=True)
      log(f"Writing the natural pictures' twin of {folder} to {natural_folder} ...")
      natural_pictures.write_natural_folder(folder, natural_folder, set(anomalies))
      open(done, "w").close()
    log("Preparing the natural pictures' shards ...")
    data["natural"], seconds = _picture_set(natural_root, natural_folder, anomalies, jpeg)
    build_seconds.update({f"natural/{k}": v for k, v in seconds.items()})
  if raw_sets:
    log("Preparing the raw shards and flat files ...")
    raw_dir, seconds = _build(folder, os.path.join(root, "tfds"), "bench_gray100", "raw",
                              IMAGE_SIZE, 1)
    build_seconds["generated/gray100"] = seconds
    if "raw" in raw_sets:
      data["raw"] = {"raw_dir": raw_dir,
                     "flat_file": write_flat_file(raw_dir, os.path.join(root, "raw.bin"))}
    if "raw10x" in raw_sets:
      large = repeat_shards(raw_dir, os.path.join(root, f"raw_x{RAW_SCALE}"), RAW_SCALE)
      data["raw10x"] = {"raw_dir": large, "flat_file": write_flat_file(
          raw_dir, os.path.join(large, "raw.bin"), RAW_SCALE)}
  return data, build_seconds


def write_raw_shards(folder: str, count: int, seed: int = 0) -> str:
  """`count` random raw 100x100 grayscale records in the gray100 layout, without images."""
  import numpy as np
  import tensorflow as tf

  from petpipe.pipeline import schema

  if os.path.exists(os.path.join(folder, "features.json")):
    return folder
  os.makedirs(folder, exist_ok=True)
  feats = schema.features(schema.ImageStorage("raw", 1, (IMAGE_SIZE, IMAGE_SIZE)),
                          ["Cat", "Dog"])
  rng = np.random.default_rng(seed)
  writers = [tf.io.TFRecordWriter(os.path.join(
      folder, f"stream-train.tfrecord-{i:05d}-of-{RSS_SHARDS:05d}")) for i in range(RSS_SHARDS)]
  for i in range(count):
    image = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
    writers[i % RSS_SHARDS].write(feats.serialize_example(
        {"image": image, "label": i % 2, "image/filename": f"{i}.png"}))
  for writer in writers:
    writer.close()
  feats.save_config(folder)
  return folder


def memory_proof(work: str, images: int, log: Callable[[str], None] = print) -> dict:
  """Peak RSS streaming N and 10xN raw images, and a run whose shards outweigh its RSS.

  TensorFlow alone maps ~0.8 GB of libraries into a process, so the third run streams
  enough records (1.5x the 10xN run's peak RSS) to be larger than the RSS it needs.
  """
  runs = {}

  def stream(count: int) -> dict:
    folder = os.path.join(work, f"stream_{count}")
    log(f"Writing {count} raw records to {folder} (if not there) and streaming them ...")
    write_raw_shards(folder, count)
    runs[str(count)] = in_fresh_process(["stream", folder])
    return runs[str(count)]

  small, large = stream(images), stream(images * RSS_SCALE)
  largest = large
  if large["shard_bytes"] <= large["peak_rss_mb"] * 2**20:
    record_bytes = large["shard_bytes"] / (images * RSS_SCALE)
    largest = stream(int(1.5 * large["peak_rss_mb"] * 2**20 / record_bytes) + 1)
  return {
      "runs": runs,
      "rss_ratio_10x_to_1x": large["peak_rss_mb"] / small["peak_rss_mb"],
      "growth_above_baseline_mb": {
          count: run["peak_rss_mb"] - run["baseline_rss_mb"] for count, run in runs.items()},
      "largest_images": largest["images"],
      "largest_shards_mb": largest["shard_bytes"] / 2**20,
      "largest_peak_rss_mb": largest["peak_rss_mb"],
      "streams_more_than_its_rss": largest["shard_bytes"] > largest["peak_rss_mb"] * 2**20,
  }


# Report -------------------------------------------------------------------------------


def add_ratios(results: dict) -> dict:
  """Each result's ratio to its set's references; the goals with their ratios and verdicts."""
  for key, result in results.items():
    set_name = key.split("/")[0]
    result["ratios"] = {}
    for reference in REFERENCES.get(set_name, ()):
      other = results.get(f"{set_name}/{reference}")
      if other:
        result["ratios"][reference] = result["images_per_s"] / other["images_per_s"]
  goals = goals_lib.ratio_goals(results, GOALS, "images_per_s")
  for goal in goals_lib.ratio_goals(results, GOALS_FROM_REQUEST, "best_from_request_per_s"):
    goals.append({**goal, "goal": goal["goal"] + ", from request"})
  for loader, seconds in FIRST_BATCH_GOALS:
    value = results[loader]["best_first_batch_seconds"] if loader in results else None
    goals.append({"goal": f"{loader} first batch <= {seconds} s", "value": value,
                  "met": None if value is None else value <= seconds})
  return {"goals": goals}


def set_title(set_name: str, images: int) -> str:
  return {"generated": f"generated pictures, {images} good files + broken ones",
          "natural": f"natural pictures, {images} good files + the same broken ones",
          "raw": "raw 100x100 shards: the generated set's gray100 build",
          "raw10x": f"raw 100x100 shards: the same records {RAW_SCALE}x over"}[set_name]


def plot(results: dict, path: str, images: int) -> None:
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  names = list(results)
  speeds = [results[n]["images_per_s"] for n in names]
  fig, ax = plt.subplots(figsize=(10, 0.32 * len(names) + 1.5))
  bars = ax.barh(names[::-1], speeds[::-1], color="tab:blue")
  for bar, name in zip(bars, names[::-1]):
    ratios = "  ".join(f"{v:.2f}x {k}" for k, v in results[name]["ratios"].items())
    ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
            f" {bar.get_width():,.0f}/s  {ratios}", va="center", fontsize=8)
  ax.set_xscale("log")
  ax.set_xlabel("images per second (log scale)")
  ax.set_title(f"One epoch -> 32 x 100x100x1 batches ({images} images; raw10x: "
               f"{images * RAW_SCALE})")
  ax.set_xlim(right=max(speeds) * 40)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def print_table(results: dict, goals: list, images: int,
                log: Callable[[str], None] = print) -> None:
  shown = None
  for key, r in results.items():
    set_name, loader = key.split("/")
    if set_name != shown:
      shown = set_name
      references = "".join(f"{'x ' + ref:>17}" for ref in REFERENCES.get(set_name, ()))
      log(f"\n{set_title(set_name, images)}")
      log(f"{'loader':<20}{'images':>8}{'seconds':>9}{'images/s':>10}{'1st batch s':>12}"
          f"{'after 1st /s':>13}{'from req /s':>12}{references}{'peak RSS MB':>13}")
    ratios = "".join(f"{r['ratios'][ref]:>17.2f}" if ref in r["ratios"] else f"{'-':>17}"
                     for ref in REFERENCES.get(set_name, ()))
    log(f"{loader:<20}{r['images']:>8}{r['seconds']:>9.2f}{r['images_per_s']:>10.0f}"
        f"{r['best_first_batch_seconds']:>12.3f}{r['best_after_first_batch_per_s']:>13.0f}"
        f"{r['best_from_request_per_s']:>12.0f}{ratios}{r['peak_rss_mb']:>13.0f}")
  log("\ngoals (every ratio from this run)")
  for goal in goals:
    if goal["met"] is None:
      log(f"  {goal['goal']:<66} not measured")
    else:
      log(f"  {goal['goal']:<66} {goal['value']:>7.2f}  "
          f"{'met' if goal['met'] else 'NOT met'}")


# The benchmark --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputSpeedConfig:
  """What to measure and where to write it.

  Attributes:
    images: good sample images in total (half per class); at least 2.
    out_dir: folder for benchmark.json and benchmark.png.
    work_dir: data folder, reused between runs; None means `out_dir/data`.
    loaders: loaders to run, from `LOADERS`; they run in `LOADERS` order.
    picture_sets: sets the JPEG loaders run on, from `PICTURE_SETS`.
    raw_10x: also run the raw loaders over `RAW_SCALE` x `images` records.
    repeats: runs per loader, each in a fresh process; the fastest is kept.
    rss: also measure peak RSS streaming N and 10xN raw images.
  """

  images: int = 5000
  out_dir: str = "benchmark_results"
  work_dir: Optional[str] = None
  loaders: Sequence[str] = LOADERS
  picture_sets: Sequence[str] = PICTURE_SETS
  raw_10x: bool = True
  repeats: int = 1
  rss: bool = False

  def __post_init__(self):
    unknown = sorted(set(self.loaders) - set(LOADERS))
    if unknown:
      raise ValueError(f"`loaders` must be among {list(LOADERS)}. Received: loaders={unknown}")
    unknown = sorted(set(self.picture_sets) - set(PICTURE_SETS))
    if unknown:
      raise ValueError(f"`picture_sets` must be among {list(PICTURE_SETS)}. "
                       f"Received: picture_sets={unknown}")
    if self.images < 2:
      raise ValueError(f"`images` must be at least 2. Received: images={self.images}")
    if self.repeats < 1:
      raise ValueError(f"`repeats` must be at least 1. Received: repeats={self.repeats}")

  def rows(self) -> list[tuple[str, str]]:
    """(set, loader) in the order they run: picture sets first, then the raw sets."""
    rows = [(s, name) for s in PICTURE_SETS if s in self.picture_sets
            for name in JPEG_LOADERS if name in self.loaders
            if s == "generated" or name not in GENERATED_ONLY]
    raw_sets = ("raw", "raw10x") if self.raw_10x else ("raw",)
    return rows + [(s, name) for s in raw_sets for name in RAW_LOADERS if name in self.loaders]


def run(config: InputSpeedConfig = InputSpeedConfig(),
        log: Callable[[str], None] = print) -> dict:
  """Measures every chosen loader on each chosen set; writes JSON and a PNG bar chart.

  Returns the report written to `out_dir/benchmark.json`; `log` receives progress and the
  tables (`print` by default).
  """
  out, images = config.out_dir, config.images
  work = config.work_dir or os.path.join(out, "data")
  os.makedirs(out, exist_ok=True)
  rows = config.rows()
  picture_sets = sorted({s for s, _ in rows if s in PICTURE_SETS})
  raw_sets = sorted({s for s, _ in rows if s not in PICTURE_SETS})
  jpeg = any(name.startswith(("shards_jpeg", "ceiling")) for _, name in rows)
  data, build_seconds = prepare_data(work, images, picture_sets, raw_sets, jpeg, log)
  results = {}
  for set_name, name in rows:
    key = f"{set_name}/{name}"
    log(f"Running {key} ...")
    runs = [in_fresh_process(["child", name, json.dumps(data[set_name])])
            for _ in range(config.repeats)]
    # The machine is shared: the fastest run is the one least disturbed.
    results[key] = max(runs, key=lambda run: run["images_per_s"])
    results[key]["runs_images_per_s"] = [run["images_per_s"] for run in runs]
    results[key]["best_first_batch_seconds"] = min(run["first_batch_seconds"] for run in runs)
    results[key]["best_after_first_batch_per_s"] = max(
        run["after_first_batch_per_s"] for run in runs)
    results[key]["best_from_request_per_s"] = max(run["from_request_per_s"] for run in runs)
  report = {"images": images, "raw_10x_images": images * RAW_SCALE if config.raw_10x else None,
            "repeats": config.repeats, "cpus": os.cpu_count(), "build_seconds": build_seconds,
            "loaders": results, **add_ratios(results)}
  if config.rss:
    report["memory"] = memory_proof(work, images, log)
  with open(os.path.join(out, "benchmark.json"), "w") as f:
    json.dump(report, f, indent=2)
  if results:
    plot(results, os.path.join(out, "benchmark.png"), images)
  print_table(results, report["goals"], images, log)
  if config.rss:
    m = report["memory"]
    growth = ", ".join(f"{count}: +{mb:.0f} MB" for count, mb in
                       m["growth_above_baseline_mb"].items())
    log(f"peak RSS streaming {RSS_SCALE * images} vs {images} raw images: "
        f"{m['rss_ratio_10x_to_1x']:.3f}x (goal <= 1.1); growth above the RSS after "
        f"imports: {growth}")
    log(f"{m['largest_shards_mb']:.0f} MB of shards ({m['largest_images']} images) "
        f"streamed with {m['largest_peak_rss_mb']:.0f} MB peak RSS")
  log(f"Wrote {os.path.join(out, 'benchmark.json')} and benchmark.png")
  return report


def _worker(argv: list[str]) -> None:
  """The fresh process: `child LOADER PATHS_JSON` or `stream DATASET_DIR`; prints one JSON line."""
  if len(argv) == 3 and argv[0] == "child":
    result = run_loader(argv[1], json.loads(argv[2]))
  elif len(argv) == 2 and argv[0] == "stream":
    result = run_stream(argv[1])
  else:
    raise SystemExit(f"usage: python -m {_MODULE} (child LOADER PATHS_JSON | stream DIR)")
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  _worker(sys.argv[1:])
