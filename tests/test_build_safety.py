"""Builds of hostile input: nothing silently wrong, every bad file or zip member skipped with a reason."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from petpipe.builders import folder_builder
from petpipe.images import sources
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder


def jpeg(seed: int, size: int = 24) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
  return buffer.getvalue()


def assert_distinct(files: dict) -> None:
  """Pictures meant to differ do: no two of `files` (name -> bytes) are the same file."""
  by_digest = {}
  for name, data in files.items():
    by_digest.setdefault(hashlib.sha256(data).hexdigest(), []).append(name)
  assert all(len(names) == 1 for names in by_digest.values()), by_digest


def write_pictures(root, per_class: int, first_seed: int, classes=("cat", "dog")) -> dict:
  """`root/<class>/<i>.jpg`, each a JPEG of its own seed (first_seed, first_seed + 1, ...),
  checked to be distinct; returns {relative path: bytes}."""
  files = {f"{cls}/{i}.jpg": jpeg(first_seed + k * per_class + i)
           for k, cls in enumerate(classes) for i in range(per_class)}
  assert_distinct(files)
  for name, data in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  return files


def config(root, **overrides) -> FolderConfig:
  base = dict(name="tiny", root=str(root), encoding="raw", image_size=16, channels=1,
              balance="none", split_percent=(100, 0, 0))
  base.update(overrides)
  return FolderConfig(**base)


def build(cfg: FolderConfig, data_dir) -> image_folder.Builder:
  builder = image_folder.Builder(config=cfg, data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


def stored_names(builder) -> list[str]:
  return sorted(ex["image/filename"].decode()
                for split in builder.info.splits
                for ex in tfds.as_numpy(builder.as_dataset(split=split)))


def manifest_of(builder) -> dict:
  return {row["path"]: row for row in folder_builder.read_manifest(builder.data_dir)
          if row["status"] != "balanced_out"}


# Zip surgery: members made bad the ways real archives are ------------------------------------


def _patch_headers(data: bytearray, name: str, *, flag_bits: int = 0, method: int | None = None) -> None:
  """Sets flag bits / the compression method of `name` in its local and central headers."""
  info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
  local = info.header_offset
  central = data.index(b"PK\x01\x02")
  while data[central + 46:central + 46 + len(name)] != name.encode():
    central = data.index(b"PK\x01\x02", central + 4)
  for header, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
    flags = int.from_bytes(data[header + flag_at:header + flag_at + 2], "little") | flag_bits
    data[header + flag_at:header + flag_at + 2] = flags.to_bytes(2, "little")
    if method is not None:
      data[header + method_at:header + method_at + 2] = method.to_bytes(2, "little")


def _payload_span(data: bytes, name: str) -> tuple[int, int]:
  info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
  start = info.header_offset
  name_len = int.from_bytes(data[start + 26:start + 28], "little")
  extra_len = int.from_bytes(data[start + 28:start + 30], "little")
  begin = start + 30 + name_len + extra_len
  return begin, begin + info.compress_size


BAD_MEMBERS = {
    # member (under pets/): expected reason prefix
    "cat/encrypted.jpg": "zip_encrypted",
    "cat/bad_crc.jpg": "zip_crc_error",
    "dog/bad_deflate.jpg": "zip_corrupt",
    "dog/imploded.jpg": "zip_unsupported",
}


def write_hostile_zip(path: str) -> None:
  """A macOS-style zip of `pets/` (plus `__MACOSX/`) with good images and every bad member kind."""
  pictures = {f"pets/{cls}/{i:04d}.jpg": jpeg(100 + 10 * k + i)
              for k, cls in enumerate(("cat", "dog")) for i in range(4)}
  pictures.update({"pets/../../escape.jpg": jpeg(7), "/absolute.jpg": jpeg(8)})
  pictures.update({f"pets/{name}": jpeg(len(name)) for name in BAD_MEMBERS})
  assert_distinct(pictures)
  with zipfile.ZipFile(path, "w") as zf:
    for cls in ("cat", "dog"):
      for i in range(4):
        name = f"pets/{cls}/{i:04d}.jpg"
        zf.writestr(name, pictures[name], zipfile.ZIP_DEFLATED)
      zf.writestr(f"__MACOSX/pets/{cls}/._0000.jpg", b"\0\5\26\7" + b"\0" * 60)
    zf.writestr("pets/cat/._0001.jpg", b"\0\5\26\7" + b"\0" * 60)
    zf.writestr("pets/cat/./0000.jpg", b"<html>garbage</html>")  # must not replace pets/cat/0000.jpg
    zf.writestr("pets/../../escape.jpg", pictures["pets/../../escape.jpg"])
    zf.writestr("/absolute.jpg", pictures["/absolute.jpg"])
    for name in BAD_MEMBERS:
      method = zipfile.ZIP_STORED if name == "cat/bad_crc.jpg" else zipfile.ZIP_DEFLATED
      zf.writestr(f"pets/{name}", pictures[f"pets/{name}"], method)
  data = bytearray(open(path, "rb").read())
  _patch_headers(data, "pets/cat/encrypted.jpg", flag_bits=1)
  _patch_headers(data, "pets/dog/imploded.jpg", method=6)
  begin, end = _payload_span(bytes(data), "pets/cat/bad_crc.jpg")
  data[(begin + end) // 2] ^= 0xFF
  begin, end = _payload_span(bytes(data), "pets/dog/bad_deflate.jpg")
  data[begin:end] = b"\xff" * (end - begin)
  open(path, "wb").write(bytes(data))


@pytest.fixture(scope="module")
def hostile_zip_build(tmp_path_factory):
  folder = tmp_path_factory.mktemp("hostile_zip")
  path = str(folder / "pets.zip")
  write_hostile_zip(path)
  return build(config(path), folder / "out")


def test_zip_of_one_folder_is_read_from_inside_it_and_macosx_is_never_a_class(hostile_zip_build):
  assert hostile_zip_build.info.features["label"].names == ["cat", "dog"]
  assert hostile_zip_build.info.metadata["card"]["ignored_folders"] == ["__MACOSX"]
  assert manifest_of(hostile_zip_build)["__MACOSX/"]["reason"] == "junk folder: never a class"


def test_appledouble_files_are_ignored_as_junk(hostile_zip_build):
  row = manifest_of(hostile_zip_build)["cat/._0001.jpg"]
  assert row["status"] == "ignored" and row["reason"].startswith("junk")


@pytest.mark.parametrize("member, reason", sorted(BAD_MEMBERS.items()))
def test_every_bad_zip_member_is_skipped_with_its_reason(hostile_zip_build, member, reason):
  row = manifest_of(hostile_zip_build)[member]
  assert row["status"] == "skipped" and row["reason"].startswith(reason), row


def test_zip_members_escaping_the_root_are_recorded_skips(hostile_zip_build):
  rows = manifest_of(hostile_zip_build)
  unsafe = {p: r for p, r in rows.items() if r["reason"].startswith("unsafe_path")}
  assert sorted(unsafe) == ["../../escape.jpg", "/absolute.jpg"]
  assert all(r["status"] == "skipped" for r in unsafe.values())


def test_a_dot_segment_member_never_replaces_the_clean_one(hostile_zip_build):
  row = manifest_of(hostile_zip_build)["cat/./0000.jpg"]
  assert row["status"] == "skipped" and row["reason"].startswith("duplicate_member")
  assert stored_names(hostile_zip_build) == [f"{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(4)]


def test_a_truncated_zip_is_a_one_line_error_naming_it(tmp_path):
  path = tmp_path / "cut.zip"
  write_hostile_zip(str(path))
  path.write_bytes(path.read_bytes()[:-300])
  with pytest.raises(ValueError, match="cut.zip is not a readable zip") as error:
    build(config(path), tmp_path / "out")
  assert "\n" not in str(error.value)


# Config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("image_size", "64"), ("image_size", [64, "64"]), ("image_size", True), ("channels", "3"),
    ("jpeg_quality", 90.0), ("split_percent", "80,10,10"), ("class_names", "cat"),
    ("follow_links", "yes"), ("allow_empty_classes", 1), ("max_file_bytes", "1e6"), ("root", 5),
])
def test_config_fields_of_the_wrong_type_fail_with_one_line_naming_them(field, value):
  with pytest.raises(ValueError, match=f"^{field} must be .* Received: {field}=") as error:
    image_folder.Builder.builder_config_cls(**{**dict(name="x", root="/tmp", encoding="raw", image_size=16),
                                               field: value})
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["../../../x", "a/b", "a\\b", ".", "..", ".hidden", "", "x y"])
def test_config_names_that_are_not_one_safe_folder_name_are_refused(name):
  with pytest.raises(ValueError, match="^name must be"):
    image_folder.Builder.builder_config_cls(name=name, root="/tmp")


def test_config_names_with_letters_digits_dot_dash_underscore_are_accepted():
  assert image_folder.Builder.builder_config_cls(name="gray-64_v1.2", root="/tmp").name == "gray-64_v1.2"


# Classes ----------------------------------------------------------------------------------------


def test_junk_and_hidden_folders_are_never_classes(tmp_path):
  for name in ("cat", "dog", "__MACOSX", ".git", "@eaDir"):
    (tmp_path / name).mkdir()
  assert sources.subfolders(str(tmp_path)) == ["cat", "dog"]
  ignored = sources.FolderSource(str(tmp_path), ["cat", "dog"]).listing().ignored_folders
  assert ignored == [(f"{name}/", "junk folder: never a class") for name in (".git", "@eaDir", "__MACOSX")]


@pytest.fixture(scope="module")
def heic_folder(tmp_path_factory):
  """cat and dog with good JPEGs, bird with only .HEIC files."""
  root = tmp_path_factory.mktemp("heic")
  for cls in ("bird", "cat", "dog"):
    (root / cls).mkdir()
  for i in range(3):
    (root / "cat" / f"{i}.jpg").write_bytes(jpeg(i))
    (root / "dog" / f"{i}.jpg").write_bytes(jpeg(10 + i))
    (root / "dog" / f"extra{i}.jpg").write_bytes(jpeg(20 + i))
    (root / "bird" / f"{i}.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 40)
  return root


def test_a_class_with_no_usable_image_fails_naming_the_class(heic_folder, tmp_path):
  with pytest.raises(ValueError, match=r"no usable image: \['bird'\].*allow_empty_classes"):
    build(config(heic_folder, balance="undersample"), tmp_path)


def test_allow_empty_classes_builds_and_balances_the_other_classes(heic_folder, tmp_path):
  builder = build(config(heic_folder, balance="undersample", allow_empty_classes=True), tmp_path)
  assert builder.info.features["label"].names == ["bird", "cat", "dog"]
  assert builder.info.metadata["card"]["counts_after_balancing"]["train"] == {"bird": 0, "cat": 3, "dog": 3}


def test_a_class_folder_linked_outside_the_root_counts_as_empty(tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "0.jpg").write_bytes(jpeg(1))
  root = tmp_path / "root"
  (root / "cat").mkdir(parents=True)
  (root / "cat" / "0.jpg").write_bytes(jpeg(2))
  os.symlink(outside, root / "dog")
  with pytest.raises(ValueError, match=r"no usable image: \['dog'\]"):
    build(config(root), tmp_path / "out")


def test_class_names_not_in_a_zip_root_fail_naming_them(tmp_path):
  path = tmp_path / "pets.zip"
  with zipfile.ZipFile(path, "w") as zf:
    for cls in ("cat", "dog"):
      zf.writestr(f"pets/{cls}/0.jpg", jpeg(1))
  with pytest.raises(ValueError, match=r"class_names not found .*\['dgo'\]"):
    build(config(path, class_names=["cat", "dgo"]), tmp_path / "out")


# Verified stores ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def changed_during_build(tmp_path_factory):
  """A build in which two files are overwritten with HTML after validation, before writing."""
  root = tmp_path_factory.mktemp("changing")
  write_pictures(root, 4, first_seed=200)
  validated = folder_builder.FolderBuilder._validated

  def validate_then_overwrite(*args, **kwargs):
    verdicts = validated(*args, **kwargs)
    for name in ("cat/0.jpg", "dog/1.jpg"):
      (root / name).write_bytes(b"<html>not the image validated</html>")
    return verdicts

  patch = pytest.MonkeyPatch()
  patch.setattr(folder_builder.FolderBuilder, "_validated", validate_then_overwrite)
  try:
    builder = build(config(root, encoding="jpeg", image_size=None, channels=3), root.parent / (root.name + "_out"))
  finally:
    patch.undo()
  return root, builder


def test_files_changed_between_validation_and_writing_are_skipped_as_changed_during_build(changed_during_build):
  _, builder = changed_during_build
  assert stored_names(builder) == ["cat/1.jpg", "cat/2.jpg", "cat/3.jpg", "dog/0.jpg", "dog/2.jpg", "dog/3.jpg"]
  rows = manifest_of(builder)
  for name in ("cat/0.jpg", "dog/1.jpg"):
    assert rows[name]["status"] == "skipped" and rows[name]["reason"].startswith("changed_during_build")
  card = builder.info.metadata["card"]
  assert card["counts_after_balancing"]["train"] == {"cat": 3, "dog": 3}
  assert card["skipped_by_reason"] == {"changed_during_build": 2}
  assert builder.info.splits["train"].num_examples == 6


def test_files_jsonl_lists_the_sha256_of_every_stored_file(changed_during_build):
  root, builder = changed_during_build
  rows = [json.loads(line) for line in open(os.path.join(builder.data_dir, "files.jsonl"))]
  assert [r["path"] for r in rows] == stored_names(builder)
  for row in rows:
    assert row["sha256"] == hashlib.sha256((root / row["path"]).read_bytes()).hexdigest()
    assert row["split"] == "train"


def test_verify_against_the_root_names_source_files_changed_since_the_build(changed_during_build, tmp_path):
  from click.testing import CliRunner
  from petpipe.scripts import verify as verify_cmd

  root, builder = changed_during_build
  copy = tmp_path / "root"
  shutil.copytree(root, copy)
  ok = CliRunner().invoke(verify_cmd.main, [builder.data_dir, "--against", str(copy)])
  assert ok.exit_code == 0, ok.output
  (copy / "cat" / "2.jpg").write_bytes(b"<html></html>")
  (copy / "dog" / "3.jpg").unlink()
  bad = CliRunner().invoke(verify_cmd.main, [builder.data_dir, "--against", str(copy)])
  assert bad.exit_code == 1
  assert "changed: cat/2.jpg" in bad.output and "missing: dog/3.jpg" in bad.output
  assert "2 source file(s)" in bad.output and "Traceback" not in bad.output


# Bounded resources --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bounded_build(tmp_path_factory):
  """Files over a small max_file_bytes, JPEGs with trailing bytes, a non-image file."""
  root = tmp_path_factory.mktemp("bounded")
  write_pictures(root, 3, first_seed=300)
  big = np.random.default_rng(5).integers(0, 256, (150, 150, 3), np.uint8)
  Image.fromarray(big).save(root / "cat" / "big.png")  # ~68 KB > 50,000 bytes
  (root / "cat" / "padded.jpg").write_bytes(jpeg(40) + bytes(30_000))  # trimmed
  (root / "dog" / "slack.jpg").write_bytes(jpeg(41) + bytes(1000))  # within the slack: kept
  (root / "dog" / "film.mp4").write_bytes(np.random.default_rng(6).bytes(60_000))
  builder = build(config(root, encoding="jpeg", image_size=None, channels=3, max_file_bytes=50_000),
                  root.parent / (root.name + "_out"))
  return root, builder


def test_files_over_max_file_bytes_are_skipped_with_their_streamed_sha256(bounded_build):
  root, builder = bounded_build
  row = manifest_of(builder)["cat/big.png"]
  assert row["status"] == "skipped" and row["reason"].startswith("too_large: more than max_file_bytes=50000")
  data = (root / "cat" / "big.png").read_bytes()
  assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size_bytes"] == len(data)
  ignored = manifest_of(builder)["dog/film.mp4"]
  assert ignored["sha256"] == hashlib.sha256((root / "dog" / "film.mp4").read_bytes()).hexdigest()


def test_bytes_after_a_jpeg_end_marker_beyond_the_slack_are_trimmed_and_recorded(bounded_build):
  root, builder = bounded_build
  rows = manifest_of(builder)
  assert rows["cat/padded.jpg"]["status"] == "repaired"
  assert rows["cat/padded.jpg"]["reason"] == "trailing_bytes: 30000 bytes after the JPEG end marker trimmed"
  assert "dog/slack.jpg" not in rows  # kept as is
  records = {ex["image/filename"].decode(): ex["image"]
             for ex in tfds.as_numpy(builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()}))}
  assert len(records["cat/padded.jpg"]) < len(jpeg(40)) + 1000  # the zeros are not stored
  assert records["dog/slack.jpg"] == (root / "dog" / "slack.jpg").read_bytes()


def test_a_picture_over_max_pixels_is_skipped_from_its_header_without_decoding(monkeypatch):
  from petpipe.images import validation

  def no_decoding(data, fmt):
    raise AssertionError("decoded")

  limits = validation.Limits(max_pixels=600)
  at_limit = validation.inspect(jpeg(1, size=24), "cat/a.jpg", "cat", limits)  # 576 pixels
  assert at_limit.status == validation.KEPT
  monkeypatch.setattr(validation, "decode_check", no_decoding)
  over = validation.inspect(jpeg(2, size=25), "cat/b.jpg", "cat", limits)  # 625 pixels
  assert (over.status, over.reason) == (validation.SKIPPED, "too_many_pixels: header declares 25x25 > 600")


def test_jpeg_end_is_found_past_a_thumbnail_end_marker():
  from petpipe.images import validation
  data = jpeg(3)
  thumb = jpeg(4)
  app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb  # a thumbnail's own FFD9 inside
  with_thumb = data[:2] + app1 + data[2:]
  assert validation.jpeg_end(with_thumb + bytes(10_000)) == len(with_thumb)


def test_memory_bombs_stay_within_200_mb_of_a_clean_build(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, "-m", "tests.bomb_build_rss", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=repo)
  assert result.returncode == 0, result.stderr[-3000:]
  peaks = json.loads(result.stdout.strip().splitlines()[-1])
  print(peaks)
  for name, peak in peaks.items():
    assert peak - peaks["clean_mb"] < 200, peaks
  def manifest(out):
    return {r["path"]: r for r in folder_builder.read_manifest(str(tmp_path / out / "image_folder" / "bombs" / "1.0.0"))}

  rows = manifest("out_bombs")
  assert rows["dog/padded.jpg"]["reason"].startswith("too_large")
  assert rows["cat/film.mp4"]["status"] == "ignored" and rows["cat/film.mp4"]["size_bytes"] == 2**29
  rows = manifest("out_pixels")
  assert rows["cat/bomb_header.jpg"]["reason"].startswith("too_many_pixels")
  assert rows["dog/big.png"]["reason"] == f"too_many_pixels: header declares 10000x10000 > {Image.MAX_IMAGE_PIXELS}"


# Duplicates -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duplicates_folder(tmp_path_factory):
  """cat: 8 images and a copy of each under another name; dog: 8 images and copies of 2 cats."""
  root = tmp_path_factory.mktemp("duplicates")
  write_pictures(root, 8, first_seed=400)  # 16 distinct pictures: the copies below are the only duplicates
  for i in range(8):
    shutil.copy(root / "cat" / f"{i}.jpg", root / "cat" / f"copy_{i}.jpg")
  for i in (6, 7):
    shutil.copy(root / "cat" / f"{i}.jpg", root / "dog" / f"cat_{i}.jpg")
  return root


def split_of_stored(builder) -> dict:
  return {ex["image/filename"].decode(): split
          for split in builder.info.splits
          for ex in tfds.as_numpy(builder.as_dataset(split=split))}


@pytest.mark.parametrize("mode", ["skip_conflicts", "keep", "drop"])
def test_exact_duplicates_share_one_split_and_conflicting_labels_follow_the_mode(duplicates_folder, tmp_path, mode):
  builder = build(config(duplicates_folder, split_percent=(34, 33, 33), duplicates=mode), tmp_path)
  where = split_of_stored(builder)
  rows = manifest_of(builder)
  card = builder.info.metadata["card"]["duplicates"]
  assert (card["groups"], card["conflicting_groups"], card["files_in_groups"]) == (8, 2, 18)
  assert len({where[f"cat/{i}.jpg"] for i in range(6)}) > 1  # the groups themselves are spread
  for i in range(6):
    if mode == "drop":
      assert f"cat/copy_{i}.jpg" not in where
      assert rows[f"cat/copy_{i}.jpg"]["reason"] == f"duplicate: same bytes as cat/{i}.jpg"
    else:
      assert where[f"cat/{i}.jpg"] == where[f"cat/copy_{i}.jpg"]
  for i in (6, 7):
    group = (f"cat/{i}.jpg", f"cat/copy_{i}.jpg", f"dog/cat_{i}.jpg")
    if mode == "keep":
      assert len({where[p] for p in group}) == 1
    else:
      assert not set(group) & set(where)
      assert all(rows[p]["reason"].startswith("duplicate_conflict: same bytes as") for p in group)
  conflict = [g for g in card["first_groups"] if g["conflict"]]
  assert [g["classes"] for g in conflict] == [["cat", "dog"], ["cat", "dog"]]


# Locks --------------------------------------------------------------------------------------------


def test_a_second_build_of_the_same_folder_fails_at_once_naming_the_holders_pid(heic_folder, tmp_path):
  cfg = config(heic_folder, class_names=["cat", "dog"])
  builder = image_folder.Builder(config=cfg, data_dir=str(tmp_path))
  with folder_builder.build_lock(builder.data_dir):  # as a running build holds it
    with pytest.raises(folder_builder.BuildLockedError, match=f"being built by process {os.getpid()} ") as error:
      image_folder.Builder(config=cfg, data_dir=str(tmp_path)).download_and_prepare()
    assert "\n" not in str(error.value)
    assert not os.path.exists(builder.data_dir)
  image_folder.Builder(config=cfg, data_dir=str(tmp_path)).download_and_prepare()  # released: builds
  assert stored_names(image_folder.Builder(config=cfg, data_dir=str(tmp_path)))


# Rescue ---------------------------------------------------------------------------------------------


def test_bmps_tensorflow_rejects_or_misreads_are_stored_with_pillows_pixels(tmp_path):
  from tests import fault_corpus

  rng = np.random.default_rng(2)
  root = tmp_path / "bmps"
  palette8 = Image.fromarray(rng.integers(0, 256, (16, 20, 3), np.uint8)).convert("P")
  files = {"a/rle8.bmp": fault_corpus._bmp_rle8(rng), "a/four.bmp": fault_corpus._bmp_4bit(rng),
           "b/sixteen.bmp": fault_corpus._bmp_16bit(rng), "b/palette8.bmp": fault_corpus._encode(palette8, "BMP"),
           "b/one.bmp": fault_corpus._encode(palette8.convert("1"), "BMP")}
  for name, data in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  builder = build(config(root, image_size=[16, 20], channels=3), tmp_path / "out")
  rows = manifest_of(builder)
  stored = {ex["image/filename"].decode(): ex["image"] for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
  assert sorted(stored) == sorted(files)
  for name in files:
    assert rows[name]["status"] == "transcoded" and rows[name]["reason"].startswith("pillow_decoded: BMP"), rows[name]
    expected = np.asarray(Image.open(root / name).convert("RGB"))
    np.testing.assert_allclose(stored[name].astype(int), expected.astype(int), atol=1, err_msg=name)


def test_near_duplicates_group_re_encoded_copies_by_perceptual_hash(tmp_path):
  import matplotlib.cbook

  photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").resize((256, 320))
  root = tmp_path / "near"
  write_pictures(root, 3, first_seed=500)
  photo.save(root / "cat" / "photo.jpg", quality=95)
  photo.resize((224, 280)).save(root / "dog" / "photo_small.jpg", quality=60)
  exact = build(config(root), tmp_path / "exact")
  assert {"cat/photo.jpg", "dog/photo_small.jpg"} <= set(stored_names(exact))
  near = build(config(root, near_duplicates=True), tmp_path / "near_out")
  rows = manifest_of(near)
  assert rows["dog/photo_small.jpg"]["reason"] == "duplicate_conflict: near-identical picture as cat/photo.jpg in another class"
  assert near.info.metadata["card"]["duplicates"]["conflicting_groups"] == 1
  assert len(stored_names(near)) == 6
