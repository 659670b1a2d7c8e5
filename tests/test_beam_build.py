"""The same builder on Apache Beam (real DirectRunner workers) matches the local build."""

import pytest
import tensorflow_datasets as tfds

from petpipe.builders import folder_builder
from petpipe import sample_data
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images

beam = pytest.importorskip("apache_beam")


def _build(manual_dir, data_dir, beam_options=None):
  builder = pet_images.Builder(config="gray100", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), beam_options=beam_options)
  )
  return builder


def _examples(builder):
  out = {}
  for split in builder.info.splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      out[ex["image/filename"].decode()] = (split, int(ex["label"]), ex["image"].tobytes())
  return out


@pytest.mark.slow
def test_beam_build_on_two_workers_equals_the_local_build(tmp_path):
  sample_data.write_sample_folder(str(tmp_path / "in"), per_class=10, min_size=24, max_size=48, seed=7, imbalance=1.4)
  local = _build(tmp_path / "in", tmp_path / "local")
  options = beam.options.pipeline_options.PipelineOptions(
      ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
  )
  on_beam = _build(tmp_path / "in", tmp_path / "beam", options)

  assert {s: i.num_examples for s, i in on_beam.info.splits.items()} == {
      s: i.num_examples for s, i in local.info.splits.items()
  }
  assert _examples(on_beam) == _examples(local)
  assert folder_builder.read_manifest(on_beam.data_dir) == folder_builder.read_manifest(local.data_dir)
  assert on_beam.info.metadata["card"] == local.info.metadata["card"]
