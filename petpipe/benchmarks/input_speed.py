"""Input speed, side by side: every way of feeding the same folder to Keras, in one run.

On one generated PetImages-shaped folder (default 5,000 images of 250-500 px plus the real
set's kinds of broken files), each loader delivers the same thing: one full epoch of
batches of 32 float32 100x100 grayscale images with labels. Each runs in a fresh process
(`python -m petpipe.benchmarks.input_speed child ...`), so that its peak RSS is its own:

1. tutorial        PIL -> Python list -> numpy, then batches (the classic tutorial's way);
2. keras           `keras.utils.image_dataset_from_directory`, on a copy of the folder
                   without the files it crashes on;
3. folder_loader   `pipeline.image_dataset_from_directory`, on the folder as it is;
4. shards_jpeg     this project's shards, original-resolution JPEG config;
5. shards_raw      this project's shards, raw 100x100 grayscale config;
6. minimal_raw     a minimal hand-written tf.data loop over the same raw shards;
7. decode_ceiling  parallel `tf.io.decode_jpeg` + resize over JPEG bytes already in RAM.

Times include building the loader (indexing, checking files) but not building shards,
which is reported apart. `rss=True` adds the memory proof: peak RSS while streaming N and
10xN raw images (each in a fresh process) and shard bytes on disk against that RSS.

    from petpipe.benchmarks import input_speed
    report = input_speed.run(input_speed.InputSpeedConfig(images=300, loaders=("keras",)))
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

_MODULE = "petpipe.benchmarks.input_speed"

LOADERS = ("tutorial", "keras", "folder_loader", "shards_jpeg", "shards_raw", "minimal_raw",
           "decode_ceiling")
IMAGE_SIZE = 100
BATCH_SIZE = 32
# Sample anomalies `keras.utils.image_dataset_from_directory` decodes; it crashes on the others
# (empty, cut off, junk, bomb, WebP, and GIF/BMP/CMYK for grayscale).
KERAS_DECODES = ("png_as_jpg", "exif_only", "grayscale", "progressive", "extraneous_bytes")
GOALS = (  # (loader, reference, at least this ratio)
    ("shards_raw", "keras", 25.0),
    ("shards_raw", "minimal_raw", 0.9),
    ("shards_jpeg", "decode_ceiling", 0.85),
    ("folder_loader", "keras", 1.0),
)
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


def folder_loader(paths: dict) -> object:
  from petpipe import pipeline

  return pipeline.image_dataset_from_directory(
      paths["folder"], color_mode="grayscale", image_size=(IMAGE_SIZE, IMAGE_SIZE),
      batch_size=BATCH_SIZE, verbose=False)


def _shards(dataset_dir: str) -> object:
  from petpipe import pipeline

  config = pipeline.PipelineConfig(image_size=IMAGE_SIZE, channels=1, batch_size=BATCH_SIZE)
  return pipeline.from_dataset_dir(dataset_dir, "train", config)


def shards_jpeg(paths: dict) -> object:
  return _shards(paths["jpeg_dir"])


def shards_raw(paths: dict) -> object:
  return _shards(paths["raw_dir"])


def minimal_raw(paths: dict) -> object:
  import glob
  import tensorflow as tf

  files = sorted(glob.glob(os.path.join(paths["raw_dir"], "*.tfrecord-*")))
  spec = {"image": tf.io.FixedLenFeature([], tf.string),
          "label": tf.io.FixedLenFeature([], tf.int64)}

  def parse(serialized):
    parsed = tf.io.parse_example(serialized, spec)
    pixels = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8),
                        (-1, IMAGE_SIZE, IMAGE_SIZE, 1))
    return tf.cast(pixels, tf.float32) / 255.0, parsed["label"]

  return (tf.data.Dataset.from_tensor_slices(files)
          .interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=False)
          .batch(BATCH_SIZE)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def decode_ceiling(paths: dict) -> object:
  import glob
  import tensorflow as tf

  spec = {"image": tf.io.FixedLenFeature([], tf.string),
          "label": tf.io.FixedLenFeature([], tf.int64)}
  files = sorted(glob.glob(os.path.join(paths["jpeg_dir"], "*.tfrecord-*")))
  records = tf.data.TFRecordDataset(files).batch(1024).map(
      lambda s: tf.io.parse_example(s, spec))
  images, labels = [], []
  for batch in records.as_numpy_iterator():
    images += list(batch["image"])
    labels += list(batch["label"])

  def decode(encoded, label):
    image = tf.image.resize(tf.io.decode_jpeg(encoded, channels=1), (IMAGE_SIZE, IMAGE_SIZE))
    return image / 255.0, label

  dataset = (tf.data.Dataset.from_tensor_slices((images, labels))
             .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
             .batch(BATCH_SIZE)
             .prefetch(tf.data.AUTOTUNE))
  # A ceiling: the bytes are in RAM and the dataset is built; only decoding is timed.
  dataset.untimed_seconds = time.perf_counter()
  return dataset


BUILDERS: dict[str, Callable] = {
    "tutorial": tutorial, "keras": keras_loader, "folder_loader": folder_loader,
    "shards_jpeg": shards_jpeg, "shards_raw": shards_raw, "minimal_raw": minimal_raw,
    "decode_ceiling": decode_ceiling,
}


# What each loader imports before its clock starts: import time is not loading time.
IMPORTS = {"tutorial": ("numpy", "PIL.Image"), "keras": ("keras",)}


def run_loader(name: str, paths: dict) -> dict:
  """Builds loader `name` and streams one epoch: images, seconds, images/s, peak RSS."""
  for module in IMPORTS.get(name, ("tensorflow", "petpipe.pipeline")):
    importlib.import_module(module)
  start = time.perf_counter()
  batches = BUILDERS[name](paths)
  # The decode ceiling starts its clock once the bytes are in RAM.
  start = getattr(batches, "untimed_seconds", start)
  images = 0
  for batch_images, batch_labels in batches:
    assert tuple(batch_images.shape[1:]) == (IMAGE_SIZE, IMAGE_SIZE, 1), batch_images.shape
    assert str(batch_images.dtype) in ("float32", "<dtype: 'float32'>"), batch_images.dtype
    assert len(batch_labels) == len(batch_images)
    images += int(batch_images.shape[0])
  seconds = time.perf_counter() - start
  return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
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


def prepare_data(work: str, images: int, log: Callable[[str], None] = print) -> dict:
  """The sample folder, its Keras-safe copy and the two shard configs (built once)."""
  from petpipe.builders import sample_data
  from petpipe.builders.folder_builder import FolderConfig
  from petpipe.builders.image_folder.image_folder_dataset_builder import Builder

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

  keras_folder = os.path.join(root, "keras_safe")
  if not os.path.isdir(keras_folder):
    for name in sample_data.CLASS_NAMES:
      os.makedirs(os.path.join(keras_folder, name))
      for file in os.listdir(os.path.join(folder, name)):
        kind = anomalies.get(f"{name}/{file}")
        if kind is None or kind in KERAS_DECODES:
          os.link(os.path.join(folder, name, file), os.path.join(keras_folder, name, file))

  built, build_seconds = {}, {}
  for key, config in (
      ("jpeg_dir", FolderConfig(name="bench_original", root=folder, encoding="jpeg",
                                image_size=None, channels=3, balance="none",
                                split_percent=(100, 0, 0))),
      ("raw_dir", FolderConfig(name="bench_gray100", root=folder, encoding="raw",
                               image_size=IMAGE_SIZE, channels=1, balance="none",
                               split_percent=(100, 0, 0))),
  ):
    builder = Builder(config=config, data_dir=os.path.join(root, "tfds"))
    start = time.perf_counter()
    builder.download_and_prepare()
    build_seconds[config.name] = time.perf_counter() - start
    built[key] = os.fspath(builder.data_dir)
  # Config names differ from the builder's own "original" and "gray100", which TFDS reserves.
  return {"folder": folder, "keras_folder": keras_folder,
          "class_names": list(sample_data.CLASS_NAMES), "build_seconds": build_seconds,
          **built}


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
  keras = results.get("keras", {}).get("images_per_s")
  for result in results.values():
    result["ratio_to_keras"] = result["images_per_s"] / keras if keras else None
  goals = []
  for loader, reference, target in GOALS:
    if loader in results and reference in results:
      ratio = results[loader]["images_per_s"] / results[reference]["images_per_s"]
      goals.append({"loader": loader, "reference": reference, "goal": target,
                    "ratio": ratio, "met": ratio >= target})
  return {"goals": goals}


def plot(results: dict, path: str, images: int) -> None:
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  names = list(results)
  speeds = [results[n]["images_per_s"] for n in names]
  fig, ax = plt.subplots(figsize=(9, 4.5))
  bars = ax.barh(names[::-1], speeds[::-1], color="tab:blue")
  for bar, name in zip(bars, names[::-1]):
    ratio = results[name].get("ratio_to_keras")
    label = f"{bar.get_width():,.0f}/s" + (f"  ({ratio:.2f}x Keras)" if ratio else "")
    ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center")
  ax.set_xscale("log")
  ax.set_xlabel("images per second (log scale)")
  ax.set_title(f"One epoch of {images} images -> 32 x 100x100x1 float32 batches")
  ax.set_xlim(right=max(speeds) * 20)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def print_table(results: dict, goals: list, log: Callable[[str], None] = print) -> None:
  log(f"\n{'loader':<16}{'images':>8}{'seconds':>9}{'images/s':>10}{'x Keras':>9}"
             f"{'peak RSS MB':>13}")
  for name, r in results.items():
    ratio = f"{r['ratio_to_keras']:.2f}" if r.get("ratio_to_keras") else "-"
    log(f"{name:<16}{r['images']:>8}{r['seconds']:>9.2f}{r['images_per_s']:>10.0f}"
               f"{ratio:>9}{r['peak_rss_mb']:>13.0f}")
  for goal in goals:
    mark = "met" if goal["met"] else "NOT met"
    log(f"goal {goal['loader']} >= {goal['goal']}x {goal['reference']}: "
               f"{goal['ratio']:.2f}x ({mark})")


# The benchmark --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputSpeedConfig:
  """What to measure and where to write it.

  Attributes:
    images: good sample images in total (half per class); at least 2.
    out_dir: folder for benchmark.json and benchmark.png.
    work_dir: data folder, reused between runs; None means `out_dir/data`.
    loaders: loaders to run, from `LOADERS`; they run in `LOADERS` order.
    repeats: runs per loader, each in a fresh process; the fastest is kept.
    rss: also measure peak RSS streaming N and 10xN raw images.
  """

  images: int = 5000
  out_dir: str = "benchmark_results"
  work_dir: Optional[str] = None
  loaders: Sequence[str] = LOADERS
  repeats: int = 1
  rss: bool = False

  def __post_init__(self):
    unknown = sorted(set(self.loaders) - set(LOADERS))
    if unknown:
      raise ValueError(f"`loaders` must be among {list(LOADERS)}. Received: loaders={unknown}")
    if self.images < 2:
      raise ValueError(f"`images` must be at least 2. Received: images={self.images}")
    if self.repeats < 1:
      raise ValueError(f"`repeats` must be at least 1. Received: repeats={self.repeats}")


def run(config: InputSpeedConfig = InputSpeedConfig(),
        log: Callable[[str], None] = print) -> dict:
  """Measures every chosen loader on one generated folder; writes JSON and a PNG bar chart.

  Returns the report written to `out_dir/benchmark.json`; `log` receives progress and the
  table (`print` by default).
  """
  out, images = config.out_dir, config.images
  work = config.work_dir or os.path.join(out, "data")
  os.makedirs(out, exist_ok=True)
  data = prepare_data(work, images, log)
  results = {}
  for name in LOADERS:
    if name in config.loaders:
      log(f"Running {name} ...")
      runs = [in_fresh_process(["child", name, json.dumps(data)])
              for _ in range(config.repeats)]
      # The machine is shared: the fastest run is the one least disturbed.
      results[name] = max(runs, key=lambda run: run["images_per_s"])
      results[name]["runs_images_per_s"] = [run["images_per_s"] for run in runs]
  report = {"images": images, "repeats": config.repeats, "cpus": os.cpu_count(),
            "build_seconds": data["build_seconds"], "loaders": results,
            **add_ratios(results)}
  if config.rss:
    report["memory"] = memory_proof(work, images, log)
  with open(os.path.join(out, "benchmark.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot(results, os.path.join(out, "benchmark.png"), images)
  print_table(results, report["goals"], log)
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
