"""Build speed, side by side: this project's pet_images builder vs TFDS's cats_vs_dogs recipe.

Both read the same generated PetImages folder and write TFRecords with TFDS in
this process, one after the other:

* the TFDS recipe (`tfds.image_classification.CatsVsDogs`): keep a file only if
  `JFIF` is in its first 10 bytes, then decode and re-encode every kept image in
  one thread. It crashes on truncated JPEGs that carry a JFIF header, so it is
  not given those (it would otherwise not finish);
* this project's builder, "original" config: fully decode every file in
  parallel threads, record skips, store clean JPEG bytes as they are.

    from petpipe.benchmarks import build_speed
    results = build_speed.run(images=5000, out_dir="benchmark_results")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import cats_vs_dogs

from petpipe.builders import sample_data
from petpipe.builders.pet_images import pet_images_dataset_builder


class _TfdsRecipe(cats_vs_dogs.CatsVsDogs, skip_registration=True):
  """TFDS's cats_vs_dogs generation, reading a local folder instead of the download."""

  name = "cats_vs_dogs_recipe"
  FOLDER = ""
  LEAVE_OUT: frozenset = frozenset()

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(self._archive())}

  def _archive(self):
    # What `dl_manager.iter_archive` yields: (member name, readable file object).
    for class_dir in ("Cat", "Dog"):
      folder = os.path.join(self.FOLDER, class_dir)
      for name in sorted(os.listdir(folder)):
        member = f"PetImages/{class_dir}/{name}"
        if member not in self.LEAVE_OUT:
          with open(os.path.join(folder, name), "rb") as f:
            yield member, f

  def _generate_examples(self, archive):
    try:
      yield from super()._generate_examples(archive)
    except ValueError as e:  # it insists on exactly 1,738 corrupt files
      if "corrupt images" not in str(e):
        raise


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def run(images: int = 5000, min_size: int = 250, max_size: int = 500,
        out_dir: str = "benchmark_results", work_dir: Optional[str] = None,
        log: Callable[[str], None] = print) -> dict:
  """Builds one generated folder both ways; writes `out_dir/build_benchmark.json`.

  `work_dir` is the scratch folder (None: a temporary one, removed after). Returns the
  results written; `log` receives progress and the table (`print` by default).
  """
  if images < 2:
    raise ValueError(f"`images` must be at least 2. Received: images={images}")
  scratch = work_dir or tempfile.mkdtemp(prefix="build_bench_")
  try:
    manual = os.path.join(scratch, "manual")
    log(f"Writing {images} sample images ({min_size}-{max_size} px) plus anomalies to {manual} ...")
    report = sample_data.write_sample_folder(
        manual, per_class=images // 2, min_size=min_size, max_size=max_size, seed=0
    )
    total_files = sum(report.counts.values()) + len(report.anomalies)
    crashing = frozenset(f"PetImages/{a.path}" for a in report.anomalies if a.kind == "truncated")

    _TfdsRecipe.FOLDER, _TfdsRecipe.LEAVE_OUT = report.root, crashing
    recipe = _TfdsRecipe(data_dir=os.path.join(scratch, "recipe_out"))
    recipe_s = _timed(recipe.download_and_prepare)
    ours = pet_images_dataset_builder.Builder(config="original", data_dir=os.path.join(scratch, "ours_out"))
    ours_s = _timed(lambda: ours.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual)))

    results = {
        "files": total_files,
        "tfds_cats_vs_dogs_recipe": {
            "seconds": recipe_s,
            "files_per_s": (total_files - len(crashing)) / recipe_s,
            "examples_written": recipe.info.splits.total_num_examples,
        },
        "this_builder_original": {
            "seconds": ours_s,
            "files_per_s": total_files / ours_s,
            "examples_written": ours.info.splits.total_num_examples,
            "card": ours.info.metadata["card"],
        },
    }
    results["speedup"] = results["this_builder_original"]["files_per_s"] / results["tfds_cats_vs_dogs_recipe"]["files_per_s"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "build_benchmark.json"), "w") as f:
      json.dump(results, f, indent=2)
    log(f"\n{'builder':<34}{'seconds':>9}{'files/s':>10}{'examples':>10}")
    for name in ("tfds_cats_vs_dogs_recipe", "this_builder_original"):
      r = results[name]
      log(f"{name:<34}{r['seconds']:>9.1f}{r['files_per_s']:>10.0f}{r['examples_written']:>10}")
    log(f"speed-up (files/s, ours / TFDS recipe): {results['speedup']:.2f}x  (goal >= 2.5x)")
    log(f"wrote {os.path.join(out_dir, 'build_benchmark.json')}")
    return results
  finally:
    if work_dir is None:
      shutil.rmtree(scratch, ignore_errors=True)
