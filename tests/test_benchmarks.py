"""The benchmark harness on tiny data: every loader and build runs and delivers what it
claims, and a run writes its JSON, PNG and goal table. Speeds are never asserted."""

import glob
import io
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
import tensorflow as tf

from petpipe.benchmarks import build_speed
from petpipe.benchmarks import input_speed
from petpipe.benchmarks import natural_pictures
from petpipe.builders import folder_builder
from petpipe import sample_data
from petpipe.scripts import benchmark as benchmark_script

IMAGES = 8  # good images; the sample folder adds its broken ones
USABLE = (sample_data.KEPT, sample_data.TRANSCODED, sample_data.REPAIRED)


def expected_images(anomalies: dict, set_name: str, loader: str) -> int:
  """What a loader must deliver from the sample's own description of its files: the good
  images plus the anomalies a builder keeps (Keras: those it decodes), once per record copy."""
  kinds = list(anomalies.values())
  if loader == "keras":
    return IMAGES + sum(kind in input_speed.KERAS_DECODES for kind in kinds)
  usable = IMAGES + sum(sample_data.ANOMALY_KINDS[kind] in USABLE for kind in kinds)
  return usable * (input_speed.RAW_SCALE if set_name == "raw10x" else 1)


def anomalies_of(work: str) -> dict:
  with open(os.path.join(work, f"sample_{IMAGES}", "report.json")) as f:
    return json.load(f)["anomalies"]


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
  work, data = bench_data
  # In this process: the fresh process only adds isolation.
  result = input_speed.run_loader(loader, data[set_name])
  assert result["images"] == expected_images(anomalies_of(work), set_name, loader)
  assert 0 < result["first_batch_seconds"] <= result["seconds"]
  assert result["after_first_batch_per_s"] > 0 or result["images"] <= input_speed.BATCH_SIZE
  assert result["images_per_s"] > 0
  # The user's clock starts later (loader built), so its rate is at least as high.
  assert result["from_request_per_s"] >= result["images_per_s"]


def test_every_loader_of_a_picture_set_delivers_its_usable_images(bench_data):
  _, data = bench_data
  counts = {name: input_speed.run_loader(name, data["natural"])["images"]
            for name in ("folder_loader", "folder_loader_fast", "shards_jpeg", "ceiling_full",
                         "ceiling_scaled")}
  assert len(set(counts.values())) == 1, counts


@pytest.mark.slow
def test_a_run_writes_json_png_and_a_goal_for_every_goal(tmp_path, bench_data, monkeypatch):
  work, _ = bench_data
  # Each loader's first run in a fresh process, as the benchmark starts it; its repeat in this
  # process, running what that process runs (`run_loader`, its answer through JSON): a second
  # fresh process would only add isolation, and the start-up of TensorFlow.
  fresh, first_runs, repeats = input_speed.in_fresh_process, [], []

  def first_run_fresh(args):
    if args[1] in first_runs:
      repeats.append(args[1])
      return json.loads(json.dumps(input_speed.run_loader(args[1], json.loads(args[2]))))
    first_runs.append(args[1])
    return fresh(args)

  monkeypatch.setattr(input_speed, "in_fresh_process", first_run_fresh)
  lines = []
  config = input_speed.InputSpeedConfig(
      images=IMAGES, out_dir=str(tmp_path / "out"), work_dir=work,
      loaders=("shards_raw", "minimal_raw"), picture_sets=(), raw_10x=False, repeats=2)
  report = input_speed.run(config, log=lines.append)
  with open(tmp_path / "out" / "benchmark.json") as f:
    assert json.load(f)["goals"] == report["goals"]
  assert (tmp_path / "out" / "benchmark.png").stat().st_size > 0
  assert list(report["loaders"]) == ["raw/shards_raw", "raw/minimal_raw"]
  assert first_runs == repeats == ["shards_raw", "minimal_raw"]
  assert len(report["loaders"]["raw/shards_raw"]["runs_images_per_s"]) == 2
  goals = {g["goal"]: g for g in report["goals"]}
  assert len(goals) == (len(input_speed.GOALS) + len(input_speed.GOALS_FROM_REQUEST)
                        + len(input_speed.FIRST_BATCH_GOALS))
  measured = goals["raw/shards_raw >= 1.0x raw/minimal_raw"]
  loaders = report["loaders"]
  from_request = goals["raw/shards_raw >= 1.0x raw/minimal_raw, from request"]
  rates = [loaders[k]["best_from_request_per_s"] for k in ("raw/shards_raw", "raw/minimal_raw")]
  assert from_request["value"] == pytest.approx(rates[0] / rates[1])
  ratio = loaders["raw/shards_raw"]["images_per_s"] / loaders["raw/minimal_raw"]["images_per_s"]
  assert measured["value"] == pytest.approx(ratio) and measured["met"] is (ratio >= 1.0)
  assert goals["raw/shards_raw first batch <= 0.15 s"]["value"] > 0
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
    return
  if build.startswith("validate_"):
    assert 0 < result["python_us_per_file"] < result["seconds"] * 1e6
    return
  records = sum(1 for shard in glob.glob(str(tmp_path / "out" / "**" / "*.tfrecord*"), recursive=True)
                for _ in tf.data.TFRecordDataset(shard))
  assert result["examples_written"] == records
  if build == "rebuild_original":
    # Only the added and changed files were validated again.
    assert result["added"] == result["changed"] == max(1, round(sample["files"] * 0.01))
    # Files that are not images (Thumbs.db) are listed again, never reused (nothing to decode).
    not_images = 2 * sum(s == sample_data.IGNORED for s in sample_data.ANOMALY_KINDS.values())
    assert result["verdicts_reused"] == sample["files"] - result["changed"] - not_images
    return
  folder = os.path.join(manual, "PetImages")
  if build == "tfds_recipe":
    # TFDS's rule: a file is kept when "JFIF" is in its first 10 bytes (crashing ones left out).
    jfif = [name for cls in ("Cat", "Dog") for name in os.listdir(os.path.join(folder, cls))
            if f"PetImages/{cls}/{name}" not in sample["crashing"]
            and b"JFIF" in open(os.path.join(folder, cls, name), "rb").read(10)]
    assert records == len(jfif)
  else:
    # Every usable file of the sample, less those balancing left out (each listed in the manifest).
    data_dir, = glob.glob(str(tmp_path / "out" / "pet_images" / build / "*"))
    balanced_out = [r for r in folder_builder.read_manifest(data_dir) if r["status"] == "balanced_out"]
    usable = IMAGES + 2 * sum(status in USABLE for status in sample_data.ANOMALY_KINDS.values())
    assert records == usable - len(balanced_out)


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


def test_scale_folders_are_distinct_tiny_jpegs_written_once(tmp_path):
  from petpipe.benchmarks import scale
  from petpipe.images import validation

  root = scale.write_folder(str(tmp_path / "scale"), 150)
  paths = sorted(p for p in (tmp_path / "scale").rglob("*.jpg"))
  assert len(paths) == 150 and {p.parent.parent.name for p in paths} == {"a", "b"}
  data = [p.read_bytes() for p in paths]
  assert len(set(data)) == 150 and max(map(len, data)) < 1024
  verdict = validation.inspect(data[0], "a/0000/0000000.jpg", "a", validation.Limits())
  assert verdict.status == validation.KEPT and (verdict.width, verdict.height) == (8, 8)
  paths[0].unlink()
  assert scale.write_folder(root, 150) == root and not paths[0].exists()  # cached, not rewritten


@pytest.mark.slow
def test_a_scale_run_builds_each_engine_in_a_fresh_process_and_writes_its_json(tmp_path):
  from petpipe.benchmarks import scale

  results = scale.run(sizes=(100,), engines=("local", "launcher"), cache_dir=str(tmp_path),
                      out_dir=str(tmp_path / "out"), log=lambda _: None)
  runs = {r["engine"]: r for r in results["runs"]}
  assert set(runs) == {"local", "launcher"}
  assert all(r["files_found"] == 100 and 0 < r["stored"] < 100 for r in runs.values())
  assert runs["launcher"]["graph_bytes"] > 0 and runs["launcher"]["job_service_peak_rss"] > 0
  assert runs["local"]["graph_bytes"] is None and runs["local"]["peak_rss"] > 0
  assert os.path.exists(tmp_path / "out" / "scale_benchmark.json")


def test_scale_goals_compare_the_driver_the_graph_and_the_local_growth_across_sizes():
  from petpipe.benchmarks import scale

  run = lambda engine, files, rss, graph=None: dict(engine=engine, files=files, peak_rss=rss,
                                                    graph_bytes=graph)
  goals = scale._goals([run("launcher", 10, 700e6, 1000), run("launcher", 1000, 900e6, 1005),
                        run("local", 10, 700e6), run("local", 100, 701e6), run("local", 1000, 701.1e6)])
  assert [(g["value"], g["met"]) for g in goals] == [(1.286, False), (1.005, True), (111.1, True)]


def test_benchmark_scale_refuses_an_unknown_engine_in_one_line():
  from petpipe.scripts import benchmark_scale

  result = CliRunner().invoke(benchmark_scale.main, ["--engines", "local,spark"])
  assert result.exit_code != 0 and "engines" in result.output
