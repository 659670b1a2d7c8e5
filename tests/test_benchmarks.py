"""The benchmark harness on tiny data: every loader and build runs and delivers what it
claims, and a run writes its JSON, PNG and goal table. Speeds are never asserted."""

import io
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from petpipe.benchmarks import build_speed
from petpipe.benchmarks import input_speed
from petpipe.benchmarks import natural_pictures
from petpipe.scripts import benchmark as benchmark_script

IMAGES = 8  # good images; the sample folder adds its broken ones


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory):
  """Every set the input benchmark reads: generated, natural, raw and raw x RAW_SCALE."""
  work = str(tmp_path_factory.mktemp("bench"))
  data, _ = input_speed.prepare_data(
      work, IMAGES, input_speed.PICTURE_SETS, ("raw", "raw10x"), jpeg=True, log=lambda _: None)
  return work, data


@pytest.fixture(scope="session")
def build_folder(tmp_path_factory):
  manual = str(tmp_path_factory.mktemp("build_bench") / "manual")
  return manual, build_speed.sample_folder(manual, IMAGES, 250, 500, log=lambda _: None)


def test_natural_pictures_are_petimages_sized_jpegs():
  photo = natural_pictures.photograph()
  sizes = []
  for seed in range(20):
    data = natural_pictures.natural_picture(photo, np.random.default_rng(seed))
    with Image.open(io.BytesIO(data)) as image:
      assert image.format == "JPEG" and image.mode == "RGB"
      assert natural_pictures.WIDTHS[0] <= image.width <= natural_pictures.WIDTHS[1]
      assert natural_pictures.HEIGHTS[0] <= image.height <= natural_pictures.HEIGHTS[1]
    sizes.append(len(data))
  assert 15_000 < np.mean(sizes) < 50_000


def test_natural_set_has_the_generated_sets_names_and_broken_files(bench_data):
  _, data = bench_data
  generated, natural = data["generated"]["folder"], data["natural"]["folder"]
  for name in data["generated"]["class_names"]:
    assert sorted(os.listdir(os.path.join(generated, name))) == sorted(
        os.listdir(os.path.join(natural, name)))
  with open(os.path.join(os.path.dirname(generated), "report.json")) as f:
    broken = json.load(f)["anomalies"]
  assert broken
  # The broken files are copied as they are: the same bytes in both sets.
  for name in broken:
    with open(os.path.join(generated, name), "rb") as a, \
        open(os.path.join(natural, name), "rb") as b:
      assert a.read() == b.read()
  with open(os.path.join(generated, "Cat/0.jpg"), "rb") as a, \
      open(os.path.join(natural, "Cat/0.jpg"), "rb") as b:
    assert a.read() != b.read()


def test_raw_10x_set_holds_the_raw_records_repeated_in_shards_the_reader_reads(bench_data):
  _, data = bench_data
  small = input_speed.run_loader("minimal_raw", data["raw"])["images"]
  large = input_speed.run_loader("shards_raw", data["raw10x"])["images"]
  assert large == input_speed.RAW_SCALE * small
  flat = os.path.getsize(data["raw10x"]["flat_file"])
  assert flat == large * input_speed.FLAT_RECORD_BYTES


@pytest.mark.parametrize("set_name,loader", input_speed.InputSpeedConfig().rows())
def test_every_loader_streams_one_epoch_of_its_set(bench_data, set_name, loader):
  _, data = bench_data
  # In this process: the fresh process only adds isolation.
  result = input_speed.run_loader(loader, data[set_name])
  assert result["images"] > 0
  assert 0 < result["first_batch_seconds"] <= result["seconds"]
  assert result["after_first_batch_per_s"] > 0 or result["images"] <= input_speed.BATCH_SIZE
  assert result["images_per_s"] > 0


def test_every_loader_of_a_picture_set_delivers_its_usable_images(bench_data):
  _, data = bench_data
  counts = {name: input_speed.run_loader(name, data["natural"])["images"]
            for name in ("folder_loader", "folder_loader_fast", "shards_jpeg", "ceiling_full",
                         "ceiling_scaled")}
  assert len(set(counts.values())) == 1, counts


@pytest.mark.slow
def test_a_run_writes_json_png_and_a_goal_for_every_goal(tmp_path, bench_data):
  work, _ = bench_data
  lines = []
  config = input_speed.InputSpeedConfig(
      images=IMAGES, out_dir=str(tmp_path / "out"), work_dir=work,
      loaders=("shards_raw", "minimal_raw"), picture_sets=(), raw_10x=False, repeats=2)
  report = input_speed.run(config, log=lines.append)
  with open(tmp_path / "out" / "benchmark.json") as f:
    assert json.load(f)["goals"] == report["goals"]
  assert (tmp_path / "out" / "benchmark.png").stat().st_size > 0
  assert list(report["loaders"]) == ["raw/shards_raw", "raw/minimal_raw"]
  assert len(report["loaders"]["raw/shards_raw"]["runs_images_per_s"]) == 2
  goals = {g["goal"]: g for g in report["goals"]}
  assert len(goals) == len(input_speed.GOALS) + len(input_speed.FIRST_BATCH_GOALS)
  measured = goals["raw/shards_raw >= 1.0x raw/minimal_raw"]
  assert measured["value"] > 0 and measured["met"] in (True, False)
  assert goals["raw/shards_raw first batch <= 0.3 s"]["value"] > 0
  assert goals["natural/shards_jpeg >= 0.9x natural/ceiling_scaled"]["met"] is None
  text = "\n".join(lines)
  assert "natural/shards_jpeg >= 0.9x natural/ceiling_scaled" in text
  assert "not measured" in text


def test_benchmark_command_refuses_an_unknown_loader_or_set_in_one_line():
  result = CliRunner().invoke(benchmark_script.main, ["--only", "keras,nope"])
  assert result.exit_code != 0 and "Received: loaders=['nope']" in result.output
  result = CliRunner().invoke(benchmark_script.main, ["--sets", "photos"])
  assert result.exit_code != 0 and "Received: picture_sets=['photos']" in result.output


@pytest.mark.parametrize("build", build_speed.BUILDS)
def test_every_build_runs_on_the_sample_folder(tmp_path, build_folder, build):
  manual, sample = build_folder
  result = build_speed.run_build(build, manual, str(tmp_path / "out"), sample["crashing"])
  assert result["seconds"] > 0
  if build == "floor":
    assert 0 < result["decoded"] < sample["files"]
  elif build.startswith("validate_"):
    assert 0 < result["python_us_per_file"] < result["seconds"] * 1e6
  else:
    assert result["examples_written"] > 0


@pytest.mark.slow
def test_a_build_run_writes_json_png_and_its_goals(tmp_path):
  lines = []
  report = build_speed.run(images=IMAGES, out_dir=str(tmp_path / "out"),
                           work_dir=str(tmp_path / "work"), builds=("floor", "gray100"),
                           log=lines.append)
  assert (tmp_path / "out" / "build_benchmark.png").stat().st_size > 0
  assert list(report["builds"]) == ["floor", "gray100"]
  goals = {g["goal"]: g for g in report["goals"]}
  assert goals["gray100 >= 0.5x floor"]["value"] > 0
  assert goals["original >= 3.0x tfds_recipe"]["met"] is None
  assert any("gray100 >= 0.5x floor" in line for line in lines)
