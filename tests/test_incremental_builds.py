"""Incremental rebuilds: verdicts of unchanged files are reused, and the records are those of
a full build of the same folder."""

from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from petpipe.builders import folder_builder
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.images import validate_files

OVERWRITE = tfds.download.DownloadConfig(download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD)


def _picture(rng, path) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(path, quality=90)


def _folder(root, rng) -> None:
  for cls in ("cat", "dog"):
    for i in range(8):
      _picture(rng, os.path.join(root, cls, f"{i}.jpg"))


def _build(root, out, overwrite=False, **overrides):
  fields = dict(name="inc", root=str(root), encoding="raw", image_size=8, channels=1,
                split_percent=(60, 20, 20), balance="none")
  fields.update(overrides)
  builder = image_folder.Builder(config=FolderConfig(**fields), data_dir=str(out))
  builder.download_and_prepare(download_config=OVERWRITE if overwrite else None)
  return builder


def _stored(builder) -> dict:
  """{file name: bytes} of the records and of the manifest and files.jsonl."""
  names = [n for n in os.listdir(builder.data_dir)
           if ".tfrecord" in n or n in (folder_builder.MANIFEST, folder_builder.FILES)]
  return {n: open(os.path.join(builder.data_dir, n), "rb").read() for n in sorted(names)}


@pytest.fixture
def validated_paths(monkeypatch):
  """The paths each build sent to validation."""
  seen = []
  real = validate_files.iter_validated_pixels

  def spy(source, candidates, *args, **kwargs):
    seen.append(sorted(c.path for c in candidates))
    return real(source, candidates, *args, **kwargs)

  monkeypatch.setattr(validate_files, "iter_validated_pixels", spy)
  return seen


def test_a_rebuild_after_adding_changing_deleting_and_relabelling_equals_a_full_build(
    tmp_path, validated_paths):
  rng = np.random.default_rng(3)
  root = tmp_path / "root"
  _folder(str(root), rng)
  first = _build(root, tmp_path / "out")
  assert first.info.metadata["card"]["verdicts_reused"] == 0
  _picture(rng, str(root / "cat" / "new.jpg"))  # added
  _picture(rng, str(root / "dog" / "new.jpg"))
  _picture(rng, str(root / "cat" / "3.jpg"))  # changed
  (root / "dog" / "2.jpg").unlink()  # deleted
  shutil.move(root / "cat" / "5.jpg", root / "dog" / "5.jpg")  # relabelled (replaces dog/5)
  shutil.move(root / "cat" / "6.jpg", root / "dog" / "from_cat_6.jpg")  # relabelled, new name

  rebuilt = _build(root, tmp_path / "out", overwrite=True)  # as `tfds build --overwrite`
  full = _build(root, tmp_path / "full")

  assert validated_paths[1] == ["cat/3.jpg", "cat/new.jpg", "dog/5.jpg", "dog/from_cat_6.jpg",
                                "dog/new.jpg"]
  # 16 files, less cat/3 (changed), dog/2 (deleted), cat/5 and cat/6 (moved) and the
  # replaced dog/5: 11 verdicts reused.
  assert rebuilt.info.metadata["card"]["verdicts_reused"] == 11
  assert full.info.metadata["card"]["verdicts_reused"] == 0
  assert _stored(rebuilt) == _stored(full)
  assert len([n for n in _stored(full) if ".tfrecord" in n]) >= 2
  labels = {ex["image/filename"].decode(): int(ex["label"])
            for split in rebuilt.info.splits
            for ex in tfds.as_numpy(rebuilt.as_dataset(split=split))}
  assert labels["dog/5.jpg"] == labels["dog/from_cat_6.jpg"] == 1 and "dog/2.jpg" not in labels


def test_another_config_reuses_a_builds_verdicts_named_by_reuse_and_sha256_catches_same_stamp_edits(
    tmp_path, validated_paths):
  rng = np.random.default_rng(4)
  root = tmp_path / "root"
  _folder(str(root), rng)
  first = _build(root, tmp_path / "a")
  # Other bytes of the same size and modification time: the stamp cannot tell.
  target = root / "dog" / "4.jpg"
  st = os.stat(target)
  data = bytearray(target.read_bytes())
  data[-3] ^= 0xFF  # inside the entropy-coded data, before the end marker
  target.write_bytes(bytes(data))
  os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))

  by_stamp = _build(root, tmp_path / "b", reuse=first.data_dir)
  assert by_stamp.info.metadata["card"]["verdicts_reused"] == 16 and len(validated_paths) == 1
  by_hash = _build(root, tmp_path / "c", name="inc_sha", reuse=first.data_dir, reuse_check="sha256")
  assert validated_paths[1] == ["dog/4.jpg"]
  assert by_hash.info.metadata["card"]["verdicts_reused"] == 15


def test_reuse_of_a_folder_without_verdicts_or_of_another_source_fails_in_one_line(tmp_path):
  rng = np.random.default_rng(5)
  _folder(str(tmp_path / "root"), rng)
  _folder(str(tmp_path / "other"), rng)
  with pytest.raises(ValueError, match=r"^reuse: no verdicts.jsonl in .*empty") as error:
    _build(tmp_path / "root", tmp_path / "out", reuse=str(tmp_path / "empty"))
  assert "\n" not in str(error.value)
  other = _build(tmp_path / "other", tmp_path / "out_other")
  with pytest.raises(ValueError, match=r"^reuse: .* another source"):
    _build(tmp_path / "root", tmp_path / "out", reuse=other.data_dir)
  with pytest.raises(ValueError, match=r"^reuse_check must be 'stamp' or 'sha256'"):
    FolderConfig(name="x", root="r", reuse_check="md5")


def test_a_raw_build_decodes_each_file_once_and_stores_what_a_second_decode_would(
    tmp_path, monkeypatch):
  """Validation decodes by the stored transform and its pixels are written; a rebuild that
  reuses every verdict has the writer decode each file instead: the records are equal."""
  from petpipe.builders import storage

  rng = np.random.default_rng(5)
  root = tmp_path / "root"
  _folder(str(root), rng)
  Image.fromarray(rng.integers(0, 256, (20, 30, 3), np.uint8)).save(root / "cat" / "p.png")
  Image.fromarray(rng.integers(0, 256, (20, 30), np.uint8)).save(root / "dog" / "g.gif")
  decoded_by_writer = []
  real = storage.encode
  monkeypatch.setattr(storage, "encode",
                      lambda data, v, *a: decoded_by_writer.append(v.path) or real(data, v, *a))

  once = _build(root, tmp_path / "out", image_size=12, channels=3)
  assert decoded_by_writer == []  # every stored file's pixels came from its validation
  records = _stored(once)
  again = _build(root, tmp_path / "out", overwrite=True, image_size=12, channels=3)
  assert again.info.metadata["card"]["verdicts_reused"] == 18
  assert len(decoded_by_writer) == 18  # reused verdicts: the writer decodes each file
  assert _stored(again) == records
