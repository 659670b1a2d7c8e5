"""Build speed, side by side: this project's pet_images builder vs TFDS's cats_vs_dogs recipe.

Both read the same generated PetImages folder and write TFRecords with TFDS in
this process, one after the other:

* the TFDS recipe (`tfds.image_classification.CatsVsDogs`): keep a file only if
  `JFIF` is in its first 10 bytes, then decode and re-encode every kept image in
  one thread. It crashes on truncated JPEGs that carry a JFIF header, so it is
  not given those (it would otherwise not finish);
* this project's builder, "original" config: fully decode every file in
  parallel threads, record skips, store clean JPEG bytes as they are.

    python scripts/benchmark_build.py --images 5000 --out benchmark_results
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import click
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


@click.command()
@click.option("--images", default=5000, show_default=True, help="Good images in total (half per class).")
@click.option("--min-size", default=250, show_default=True)
@click.option("--max-size", default=500, show_default=True)
@click.option("--out", default="benchmark_results", show_default=True, help="Folder for build_benchmark.json.")
@click.option("--workdir", default=None, help="Scratch folder (default: a temporary one, removed after).")
def main(images: int, min_size: int, max_size: int, out: str, workdir: str | None) -> None:
  if images < 2:
    raise click.BadParameter("needs at least 2 images", param_hint="--images")
  scratch = workdir or tempfile.mkdtemp(prefix="build_bench_")
  try:
    manual = os.path.join(scratch, "manual")
    click.echo(f"Writing {images} sample images ({min_size}-{max_size} px) plus anomalies to {manual} ...")
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
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "build_benchmark.json"), "w") as f:
      json.dump(results, f, indent=2)
    click.echo(f"\n{'builder':<34}{'seconds':>9}{'files/s':>10}{'examples':>10}")
    for name in ("tfds_cats_vs_dogs_recipe", "this_builder_original"):
      r = results[name]
      click.echo(f"{name:<34}{r['seconds']:>9.1f}{r['files_per_s']:>10.0f}{r['examples_written']:>10}")
    click.echo(f"speed-up (files/s, ours / TFDS recipe): {results['speedup']:.2f}x  (goal >= 2.5x)")
    click.echo(f"wrote {os.path.join(out, 'build_benchmark.json')}")
  finally:
    if workdir is None:
      shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
  main()
