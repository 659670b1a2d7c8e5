"""The same builder on Apache Beam matches the local build: records, card, manifest and
files.jsonl, with duplicates present, on two multi-process engines (the DirectRunner's
FnApiRunner with worker processes, and the PortableRunner with an external worker pool)."""

import shutil

import pytest
import tensorflow_datasets as tfds

from petpipe import sample_data
from petpipe.builders import folder_builder
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images
from petpipe.pipeline import dataset_files
from petpipe.pipeline import verify

beam = pytest.importorskip("apache_beam")

# The DirectRunner's own batch engine, named so that Beam never tries to download Prism.
MULTI_PROCESS = ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _build(manual_dir, data_dir, beam_args=None, config="gray100"):
  options = beam.options.pipeline_options.PipelineOptions(beam_args) if beam_args else None
  builder = pet_images.Builder(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), beam_options=options))
  return builder


def _examples(builder):
  out = {}
  for split in builder.info.splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      out[ex["image/filename"].decode()] = (split, int(ex["label"]), ex["image"].tobytes())
  return out


def _assert_same_build(on_beam, local):
  assert on_beam.info.metadata["card"] == local.info.metadata["card"]
  assert {s: i.num_examples for s, i in on_beam.info.splits.items()} == {
      s: i.num_examples for s, i in local.info.splits.items()}
  assert _examples(on_beam) == _examples(local)
  assert folder_builder.read_manifest(on_beam.data_dir) == folder_builder.read_manifest(local.data_dir)
  assert list(dataset_files.rows(on_beam.data_dir, verify.FILES)) == list(
      dataset_files.rows(local.data_dir, verify.FILES))


@pytest.fixture(scope="module")
def with_duplicates(tmp_path_factory):
  """Sample pictures, and copies: two in their own class, one in the other class."""
  root = tmp_path_factory.mktemp("dups")
  sample_data.write_sample_folder(str(root), per_class=10, min_size=24, max_size=48, seed=7, imbalance=1.4)
  pets = root / "PetImages"
  cats, dogs = sorted((pets / "Cat").glob("[0-9]*.jpg")), sorted((pets / "Dog").glob("[0-9]*.jpg"))
  shutil.copy(cats[0], pets / "Cat" / "copy_a.jpg")
  shutil.copy(cats[0], pets / "Cat" / "copy_b.jpg")
  shutil.copy(dogs[1], pets / "Cat" / "dog_as_cat.jpg")
  return root


@pytest.fixture(scope="module")
def local_build(with_duplicates, tmp_path_factory):
  return _build(with_duplicates, tmp_path_factory.mktemp("local"))


@pytest.mark.slow
def test_beam_build_with_duplicates_on_worker_processes_equals_the_local_build(
    with_duplicates, local_build, tmp_path):
  card = local_build.info.metadata["card"]["duplicates"]
  assert card["groups"] == 2 and card["conflicting_groups"] == 1
  on_beam = _build(with_duplicates, tmp_path / "beam", MULTI_PROCESS)
  _assert_same_build(on_beam, local_build)
  splits = {p: s for p, (s, _, _) in _examples(on_beam).items()}
  copies = [p for p in splits if "copy_" in p]
  assert len({splits[p] for p in copies}) == 1  # copies share their original's split
  assert not {"Cat/dog_as_cat.jpg"} & set(splits)  # a copy in another class: skipped


@pytest.mark.slow
def test_verify_against_the_source_works_on_a_beam_build(with_duplicates, tmp_path):
  copy = tmp_path / "source"  # changed below: the other tests' folder stays as it is
  shutil.copytree(with_duplicates, copy)
  on_beam = _build(copy, tmp_path / "beam", ["--runner=FnApiRunner"], config="original")
  source = copy / "PetImages"
  assert verify.changed_sources(on_beam.data_dir, str(source)) == []
  stored = next(dataset_files.rows(on_beam.data_dir, verify.FILES))["path"]
  (source / stored).write_bytes(b"changed")
  assert verify.changed_sources(on_beam.data_dir, str(source)) == [(stored, "changed")]


@pytest.mark.slow
def test_beam_build_on_the_portable_runner_with_an_external_worker_pool_equals_the_local_build(
    with_duplicates, local_build, tmp_path):
  from petpipe.benchmarks import scale

  with scale.portable_services() as (args, _):
    on_beam = _build(with_duplicates, tmp_path / "portable", args)
  _assert_same_build(on_beam, local_build)


@pytest.mark.slow
def test_the_beam_plan_sorting_edge_buckets_and_writing_parts_gives_the_local_choice(tmp_path):
  """Two hash buckets a class (most files on the edge, ranked by hash then path) and parts of
  3 rows: the same files kept, and the parts read in order are the local build's files."""
  from petpipe.builders import beam_build
  from petpipe.builders.folder_config import FolderConfig
  from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
  from petpipe.images import sources

  root = sample_data.write_sample_folder(str(tmp_path / "in"), per_class=12, min_size=16,
                                         max_size=24, seed=3, imbalance=1.5).root
  config = FolderConfig(name="plan", root=root, encoding="jpeg", balance="undersample")
  local = image_folder.Builder(config=config, data_dir=str(tmp_path / "local"))
  local.download_and_prepare()
  out = tmp_path / "plan"
  out.mkdir()
  plan = beam_build.Plan(sources.FolderSource(root, ["Cat", "Dog"]), ["Cat", "Dog"],
                         {"Cat": "Cat", "Dog": "Dog"}, local.builder_config, None, str(out), [],
                         rows_per_part=3, bucket_bits=1)
  card = plan.run(None, beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"]))
  assert card == local.info.metadata["card"] and card["balanced_out"] > 3
  assert len(dataset_files.paths(str(out), verify.FILES)) > 2
  assert list(dataset_files.rows(str(out), verify.FILES)) == list(
      dataset_files.rows(local.data_dir, verify.FILES))
  assert folder_builder.read_manifest(str(out)) == folder_builder.read_manifest(local.data_dir)
