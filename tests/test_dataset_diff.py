"""`petpipe diff OLD NEW` / `pipeline.diff_datasets`: each kind of change between two builds,
found and counted; the same build twice is no difference."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
from PIL import Image
import pytest
from click.testing import CliRunner

from petpipe import pipeline
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.scripts import diff as diff_cmd


def _jpeg(seed: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (20, 20, 3), np.uint8)).save(
      buffer, "JPEG")
  return buffer.getvalue()


def _folder(root) -> None:
  for c, cls in enumerate(("cat", "dog")):
    (root / cls).mkdir(parents=True)
    for i in range(4):
      (root / cls / f"{i}.jpg").write_bytes(_jpeg(10 * c + i))


def _build(root, out, name="t", split=(100, 0, 0)) -> str:
  config = FolderConfig(name=name, root=str(root), encoding="raw", image_size=8, channels=1,
                        balance="none", split_percent=split)
  builder = image_folder.Builder(config=config, data_dir=str(out))
  builder.download_and_prepare()
  return builder.data_dir


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
  base = tmp_path_factory.mktemp("diff")
  _folder(base / "old")
  shutil.copytree(base / "old", base / "new")
  new = base / "new"
  (new / "dog" / "4.jpg").write_bytes(_jpeg(99))  # added
  (new / "cat" / "1.jpg").write_bytes(_jpeg(98))  # changed
  (new / "dog" / "0.jpg").unlink()  # removed
  (new / "cat" / "2.jpg").rename(new / "dog" / "2b.jpg")  # relabelled
  (new / "cat" / "3.jpg").rename(new / "cat" / "3b.jpg")  # renamed
  (new / "dog" / "1.jpg").write_bytes(_jpeg(11)[:200])  # now skipped: truncated
  return (_build(base / "old", base / "out_old"), _build(new, base / "out_new"),
          _build(base / "old", base / "out_again"),
          _build(base / "old", base / "out_split", name="v", split=(0, 100, 0)))


def test_each_kind_of_change_is_found_and_named(builds):
  old, new, _, _ = builds
  diff = pipeline.diff_datasets(old, new)
  paths = lambda items: [(a.path, b if isinstance(b, str) else b.path) for a, b in items]
  assert paths(diff.added) == [("dog/4.jpg", "")]
  assert [p for p, _ in paths(diff.removed)] == ["dog/0.jpg", "dog/1.jpg"]
  assert diff.removed[0][1] == "not in the source any more"
  assert diff.removed[1][1].startswith("skipped: truncated")
  assert paths(diff.changed) == [("cat/1.jpg", "cat/1.jpg")]
  assert [(a.path, a.label, b.path, b.label) for a, b in diff.relabelled] == [
      ("cat/2.jpg", "cat", "dog/2b.jpg", "dog")]
  assert paths(diff.renamed) == [("cat/3.jpg", "cat/3b.jpg")]
  assert diff.moved == []
  # cat: 4 -> 3 (2.jpg relabelled away); dog: 4 - 0.jpg - 1.jpg + 4.jpg + 2b.jpg = 4.
  assert diff.counts == {("train", "cat"): (4, 3)}
  assert not diff.same


def test_a_file_in_another_split_is_moved(builds):
  old, _, _, split = builds
  diff = pipeline.diff_datasets(old, split)
  assert len(diff.moved) == 8 and {(a.split, b.split) for a, b in diff.moved} == {
      ("train", "validation")}
  assert diff.counts == {("train", "cat"): (4, 0), ("train", "dog"): (4, 0),
                         ("validation", "cat"): (0, 4), ("validation", "dog"): (0, 4)}


def test_the_command_exits_0_for_the_same_files_1_for_changes_2_for_no_dataset(builds, tmp_path):
  old, new, again, _ = builds
  same = CliRunner().invoke(diff_cmd.main, [old, again])
  assert same.exit_code == 0 and "no difference" in same.output
  changed = CliRunner().invoke(diff_cmd.main, [old, new])
  assert changed.exit_code == 1
  assert "1 added, 2 removed, 1 changed, 1 relabelled, 0 moved between splits, 1 renamed" in (
      changed.output)
  assert "train/cat: 4 -> 3 (-1)" in changed.output
  as_json = CliRunner().invoke(diff_cmd.main, [old, new, "--json"])
  assert as_json.exit_code == 1
  report = json.loads(as_json.output)
  assert report["same"] is False and report["relabelled"][0]["new"]["path"] == "dog/2b.jpg"
  missing = CliRunner().invoke(diff_cmd.main, [old, str(tmp_path)])
  assert missing.exit_code == 2 and "files.jsonl" in missing.output
