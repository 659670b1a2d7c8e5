"""The builders on generated PetImages-shaped data: what a user relies on after a build."""

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

from petpipe.builders import folder_builder
from petpipe import sample_data
from petpipe.images import sources
from petpipe.builders import splits
from petpipe.builders import stable_records
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images
from petpipe.pipeline import ops
from petpipe.pipeline import schema
from petpipe.images import transform
from tests.shards_fixture import jpeg_bytes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_pets(manual_dir, data_dir, config="gray100"):
  builder = pet_images.Builder(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


def shard_hashes(builder):
  files = sorted(tf.io.gfile.glob(os.path.join(builder.data_dir, "*.tfrecord*")))
  return {os.path.basename(f): hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
  """Imbalanced sample (1.5 dogs per cat) with every anomaly kind, built twice."""
  root = tmp_path_factory.mktemp("pets")
  report = sample_data.write_sample_folder(str(root), per_class=14, min_size=24, max_size=64, seed=3, imbalance=1.5)
  raw = build_pets(root, root / "out", "gray100")
  original = build_pets(root, root / "out", "original")
  return report, raw, original


@pytest.fixture(scope="module")
def manifest_rows(pets):
  _, raw, _ = pets
  return folder_builder.read_manifest(raw.data_dir)


@pytest.fixture(scope="module")
def manifest(manifest_rows):
  """Path → validation row (a file can also have a second, "balanced_out" row)."""
  return {row["path"]: row for row in manifest_rows if row["status"] != "balanced_out"}


def test_each_anomaly_kind_gets_its_outcome_and_reason(pets, manifest):
  report, _, _ = pets
  for anomaly in report.anomalies:
    row = manifest.get(anomaly.path)
    if anomaly.expected == "kept":
      assert row is None, anomaly
    else:
      assert row is not None, anomaly
      assert row["status"] == anomaly.expected, (anomaly, row)
      assert row["reason"], anomaly


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("zero_byte", "empty"),
        ("truncated", "truncated"),
        ("junk", "not_an_image"),
        ("bomb", "too_many_pixels"),
        ("png_as_jpg", "format: PNG"),
        ("webp_as_jpg", "format: WEBP"),
        ("cmyk", "colour space: CMYK"),
        ("extraneous_bytes", "libjpeg warning: Corrupt JPEG data"),
        ("thumbs_db", "not an image file name"),
    ],
)
def test_manifest_reason_names_the_problem(pets, manifest, kind, reason):
  report, _, _ = pets
  paths = [a.path for a in report.anomalies if a.kind == kind]
  assert paths
  for path in paths:
    assert manifest[path]["reason"].startswith(reason), manifest[path]


def test_manifest_rows_carry_size_and_sha256_of_the_file(pets, manifest):
  report, _, _ = pets
  for path, row in manifest.items():
    data = open(os.path.join(report.root, path), "rb").read()
    assert row["size_bytes"] == len(data)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()


def test_every_usable_file_is_stored_or_balanced_out_and_none_twice(pets, manifest_rows):
  report, raw, _ = pets
  stored = [ex["image/filename"].decode() for s in ("train", "validation", "test") for ex in examples(raw, s)]
  assert len(stored) == len(set(stored)), "a file sits in two splits"
  balanced_out = {r["path"] for r in manifest_rows if r["status"] == "balanced_out"}
  assert not balanced_out & set(stored)
  usable = report.expected_counts()
  assert len(stored) + len(balanced_out) == sum(usable.values())


def test_balancing_cuts_each_split_to_its_smallest_class_and_records_the_counts_before(pets):
  _, raw, _ = pets
  card = raw.info.metadata["card"]
  # 23 usable cats and 30 dogs (good images + usable anomalies), split by the path rule.
  assert card["counts_before_balancing"] == {
      "train": {"cat": 19, "dog": 23}, "validation": {"cat": 1, "dog": 5}, "test": {"cat": 3, "dog": 2}}
  assert card["counts_after_balancing"] == {
      "train": {"cat": 19, "dog": 19}, "validation": {"cat": 1, "dog": 1}, "test": {"cat": 2, "dog": 2}}
  assert card["balanced_out"] == 4 + 4 + 1
  names = raw.info.features["label"].names
  for split, counts in card["counts_after_balancing"].items():  # what the records hold
    labels = collections.Counter(names[int(ex["label"])] for ex in examples(raw, split))
    assert labels == counts, split


def test_card_counts_skips_by_reason_and_transcodes(pets):
  report, raw, _ = pets
  card = raw.info.metadata["card"]
  assert card["skipped_by_reason"] == {"empty": 2, "not_an_image": 2, "too_many_pixels": 2, "truncated": 2}
  assert card["transcoded_by_reason"] == {"colour space": 2, "format": 8}
  assert card["repaired"] == 2 and card["ignored"] == 2
  assert 24 <= card["image_width"]["min"] <= card["image_width"]["max"] <= 64
  reloaded = tfds.builder_from_directory(raw.data_dir)
  assert reloaded.info.metadata["card"] == card


def test_raw_config_stores_resized_pixels_of_the_file(pets):
  report, raw, _ = pets
  ex = examples(raw, "train")[0]
  assert ex["image"].shape == (100, 100, 1) and ex["image"].dtype == np.uint8
  data = open(os.path.join(report.root, ex["image/filename"].decode()), "rb").read()
  # The one transform (JPEG DCT scale, plain bilinear), rounded: what prediction makes too.
  expected = ops.normalize(transform.transform_bytes(data, transform.Preprocessing(100, 1)), "none")
  np.testing.assert_array_equal(ex["image"], expected.numpy())


def test_original_config_keeps_clean_jpeg_bytes_as_on_disk(pets, manifest):
  report, _, original = pets
  files = tf.io.gfile.glob(os.path.join(original.data_dir, "pet_images-train.tfrecord*"))
  records = [tf.io.parse_single_example(r, schema.parse_spec()) for r in tf.data.TFRecordDataset(files)]
  clean = transcoded = 0
  for rec in records:
    path = rec[schema.FILENAME].numpy().decode()
    on_disk = open(os.path.join(report.root, path), "rb").read()
    if path in manifest:  # transcoded or repaired: a new, clean JPEG
      assert rec[schema.IMAGE].numpy() != on_disk
      assert rec[schema.IMAGE].numpy()[:2] == b"\xff\xd8"
      transcoded += 1
    else:
      assert rec[schema.IMAGE].numpy() == on_disk
      clean += 1
  assert clean > 10 and transcoded > 0


def test_two_builds_of_the_same_input_give_identical_shards(pets, tmp_path):
  report, raw, _ = pets
  again = build_pets(os.path.dirname(report.root), tmp_path, "gray100")
  assert shard_hashes(again) == shard_hashes(raw)
  assert shard_hashes(raw)


def test_records_are_written_with_sorted_map_entries(pets):
  _, raw, original = pets
  for builder in (raw, original):
    for shard in tf.io.gfile.glob(os.path.join(builder.data_dir, "*.tfrecord*")):
      for record in tf.data.TFRecordDataset(shard).as_numpy_iterator():
        assert stable_records.deterministic_bytes(record) == record


def test_builds_leave_the_tfds_serializer_of_other_datasets_unpatched(pets):
  serialize = example_serializer.ExampleSerializer.serialize_example
  assert serialize.__module__ == "tensorflow_datasets.core.example_serializer"
  assert serialize.__qualname__ == "ExampleSerializer.serialize_example"


@pytest.fixture(scope="module")
def fresh_import():
  """What importing petpipe.builders does to a fresh process."""
  code = (
      "import sys\n"
      "from tensorflow_datasets.core import example_serializer\n"
      "original = example_serializer.ExampleSerializer.serialize_example\n"
      "beam_before = 'apache_beam' in sys.modules\n"
      "import petpipe.builders\n"
      "print(beam_before, 'apache_beam' in sys.modules,\n"
      "      example_serializer.ExampleSerializer.serialize_example is original)\n"
  )
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  beam_before, beam_after, serializer_kept = result.stdout.split()[-3:]
  return {"beam_before": beam_before == "True", "beam_after": beam_after == "True",
          "serializer_kept": serializer_kept == "True"}


def test_importing_the_builders_does_not_import_apache_beam(fresh_import):
  assert not fresh_import["beam_before"]  # tensorflow_datasets itself does not either
  assert not fresh_import["beam_after"]


def test_importing_the_builders_leaves_the_tfds_serializer_unpatched(fresh_import):
  assert fresh_import["serializer_kept"]


def test_zip_input_gives_the_same_examples_as_the_folder(pets, tmp_path):
  _, raw, _ = pets
  sample_data.write_sample_zip(
      str(tmp_path / "in" / sample_data.ARCHIVE_NAME), per_class=14, min_size=24, max_size=64, seed=3, imbalance=1.5
  )
  from_zip = build_pets(tmp_path / "in", tmp_path / "out", "gray100")
  assert shard_hashes(from_zip) == shard_hashes(raw)
  assert folder_builder.read_manifest(from_zip.data_dir) == folder_builder.read_manifest(raw.data_dir)


def test_zip_member_names_are_normalised_and_escapes_recorded_as_skips(tmp_path):
  assert sources.member_table(["PetImages\\Cat\\1.jpg", "readme.txt", "PetImages/Dog/"], "PetImages/").clean == {
      "Cat/1.jpg": "PetImages\\Cat\\1.jpg"
  }
  table = sources.member_table(["PetImages/../../etc/passwd"], "PetImages/")
  assert table.clean == {} and table.rejected[0][1].startswith("unsafe_path")
  path = tmp_path / "evil.zip"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("PetImages/Cat/0.jpg", b"x")
    zf.writestr("PetImages/Dog/../../../outside.jpg", b"x")
  found = sources.ZipSource(str(path), ["Cat", "Dog"], "PetImages/").listing().candidates
  assert [(c.path, c.skip_reason[:11]) for c in found] == [("Cat/0.jpg", ""), ("Dog/../../../outside.jpg", "unsafe_path")]


@pytest.mark.parametrize("layout", ["PetImages", "flat"])
def test_cat_dog_folders_found_with_or_without_petimages(tmp_path, layout):
  sample_data.write_sample_folder(str(tmp_path), per_class=3, min_size=16, max_size=24, anomalies=False)
  if layout == "flat":
    os.rename(tmp_path / "PetImages", tmp_path / "flat")
    manual = tmp_path / "flat"
  else:
    manual = tmp_path
  source = pet_images.find_source(str(manual))
  assert len(source.listing().candidates) == 6


def test_missing_or_empty_manual_dir_says_what_to_put_there(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist: put kagglecatsanddogs_5340.zip there"):
    pet_images.find_source(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match="No PetImages found in .*: put kagglecatsanddogs_5340.zip"):
    pet_images.find_source(str(tmp_path))


def test_split_of_a_file_never_changes_when_files_are_added():
  old = [f"Cat/{i}.jpg" for i in range(500)]
  before = {p: splits.split_of(p, (80, 10, 10)) for p in old}
  more = old + [f"Cat/{i}.jpg" for i in range(500, 2000)]
  after = {p: splits.split_of(p, (80, 10, 10)) for p in more}
  assert all(after[p] == before[p] for p in old)
  shares = {s: sum(v == s for v in after.values()) / len(after) for s in splits.SPLITS}
  assert abs(shares["train"] - 0.8) < 0.03 and abs(shares["test"] - 0.1) < 0.03


# Golden tables: the split of fixed paths, from the first 8 bytes of sha256("split:" + path)
# as a fraction of 2**64 against the cumulative percentages, and which files balancing keeps
# (the smallest sha256("balance:" + path)). Any other hash, or one that varies from process
# to process (Python's hash()), moves some of them; so would a change of the rule, which
# moves existing users' files between splits.
GOLDEN_SPLITS = {
    (80, 10, 10): dict(
        train=["Cat/0.jpg", "Cat/3.jpg", "Cat/4.jpg", "Cat/6.jpg", "Cat/7.jpg", "Cat/8.jpg", "Cat/9.jpg",
               "Dog/0.jpg", "Dog/6.jpg", "Dog/7.jpg", "Dog/8.jpg", "Dog/9.jpg"],
        validation=["Cat/1.jpg", "Dog/2.jpg", "Dog/3.jpg", "Dog/5.jpg"],
        test=["Cat/2.jpg", "Cat/5.jpg", "Dog/1.jpg", "Dog/4.jpg"]),
    (34, 33, 33): dict(
        train=["Cat/8.jpg", "Cat/9.jpg", "Dog/0.jpg"],
        validation=["Cat/0.jpg", "Cat/3.jpg", "Cat/4.jpg", "Cat/6.jpg", "Dog/7.jpg", "Dog/8.jpg", "Dog/9.jpg"],
        test=["Cat/1.jpg", "Cat/2.jpg", "Cat/5.jpg", "Cat/7.jpg", "Dog/1.jpg", "Dog/2.jpg", "Dog/3.jpg",
              "Dog/4.jpg", "Dog/5.jpg", "Dog/6.jpg"]),
}
GOLDEN_NAMES = [f"{c}/{i}.jpg" for c in ("Cat", "Dog") for i in range(10)]
# GOLDEN_SPLITS[(80, 10, 10)] balanced: train keeps 5 of its 7 cats, validation 1 of its 3 dogs.
GOLDEN_BALANCED = dict(
    train=["Cat/0.jpg", "Cat/3.jpg", "Cat/4.jpg", "Cat/6.jpg", "Cat/7.jpg",
           "Dog/0.jpg", "Dog/6.jpg", "Dog/7.jpg", "Dog/8.jpg", "Dog/9.jpg"],
    validation=["Cat/1.jpg", "Dog/2.jpg"],
    test=["Cat/2.jpg", "Cat/5.jpg", "Dog/1.jpg", "Dog/4.jpg"])


@pytest.mark.parametrize("percent", sorted(GOLDEN_SPLITS))
def test_split_of_fixed_paths_matches_the_golden_table(percent):
  found = {s: sorted(p for p in GOLDEN_NAMES if splits.split_of(p, percent) == s) for s in splits.SPLITS}
  assert found == GOLDEN_SPLITS[percent]
  assert splits.stable_fraction("Cat/0.jpg", "split") == int.from_bytes(
      hashlib.sha256(b"split:Cat/0.jpg").digest()[:8], "big") / 2**64 == pytest.approx(0.571061)


@pytest.fixture(scope="module")
def golden_folder(tmp_path_factory):
  """Cat/0-9.jpg and Dog/0-9.jpg, 20 distinct tiny JPEGs (the golden table's names)."""
  root = tmp_path_factory.mktemp("golden") / "root"
  rng = np.random.default_rng(11)
  files = {name: jpeg_bytes(rng.integers(0, 256, (16, 16, 3), np.uint8)) for name in GOLDEN_NAMES}
  assert len(set(files.values())) == len(files)
  for name, data in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
  return root


def _build_golden(root, data_dir, balance):
  cfg = FolderConfig(name=f"golden_{balance}", root=str(root), encoding="raw", image_size=8, channels=1,
                     balance=balance, split_percent=(80, 10, 10))
  builder = image_folder.Builder(config=cfg, data_dir=str(data_dir))
  builder.download_and_prepare()
  with open(os.path.join(builder.data_dir, folder_builder.FILES)) as f:
    rows = [json.loads(line) for line in f]
  return builder, {s: sorted(r["path"] for r in rows if r["split"] == s) for s in splits.SPLITS}


def test_a_balanced_build_keeps_the_golden_files_of_each_class_not_the_first_by_name(tmp_path):
  # 6 cats, 4 dogs, 5 owls, all in train: each class keeps the 4 files of smallest salted path
  # hash, computed independently here; cat/1, cat/4 and owl/0 go although they sort early.
  root = tmp_path / "root"
  rng = np.random.default_rng(5)
  for cls, n in (("cat", 6), ("dog", 4), ("owl", 5)):
    (root / cls).mkdir(parents=True)
    for i in range(n):
      (root / cls / f"{i}.jpg").write_bytes(jpeg_bytes(rng.integers(0, 256, (16, 16, 3), np.uint8)))
  cfg = FolderConfig(name="golden_three", root=str(root), encoding="raw", image_size=8, channels=1,
                     balance="undersample", split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=cfg, data_dir=str(tmp_path / "out"))
  builder.download_and_prepare()
  stored = sorted(ex["image/filename"].decode() for ex in examples(builder, "train"))
  assert stored == ["cat/0.jpg", "cat/2.jpg", "cat/3.jpg", "cat/5.jpg",
                    "dog/0.jpg", "dog/1.jpg", "dog/2.jpg", "dog/3.jpg",
                    "owl/1.jpg", "owl/2.jpg", "owl/3.jpg", "owl/4.jpg"]
  for cls in ("cat", "owl"):
    paths = sorted(p for p in stored + ["cat/1.jpg", "cat/4.jpg", "owl/0.jpg"] if p.startswith(cls))
    by_hash = sorted(paths, key=lambda p: hashlib.sha256(f"balance:{p}".encode()).digest()[:8])
    assert sorted(by_hash[:4]) == [p for p in stored if p.startswith(cls)]


def test_a_build_puts_each_file_in_its_golden_split(golden_folder, tmp_path):
  builder, stored = _build_golden(golden_folder, tmp_path, "none")
  assert stored == GOLDEN_SPLITS[(80, 10, 10)]
  for split, paths in stored.items():
    assert sorted(ex["image/filename"].decode() for ex in examples(builder, split)) == paths


def test_copies_under_other_names_land_in_their_originals_golden_split(golden_folder, tmp_path):
  root = tmp_path / "root"
  shutil.copytree(golden_folder, root)
  # Alone, both copies' names would go to train; a group is split by its first path.
  shutil.copy(root / "Cat" / "1.jpg", root / "Cat" / "1_copy.jpg")  # Cat/1.jpg: validation
  shutil.copy(root / "Dog" / "2.jpg", root / "Dog" / "copy_of_2.jpg")  # Dog/2.jpg: validation
  assert {splits.split_of(p, (80, 10, 10)) for p in ("Cat/1_copy.jpg", "Dog/copy_of_2.jpg")} == {"train"}
  _, stored = _build_golden(root, tmp_path / "out", "none")
  golden = GOLDEN_SPLITS[(80, 10, 10)]
  assert stored == dict(golden, validation=sorted(golden["validation"] + ["Cat/1_copy.jpg", "Dog/copy_of_2.jpg"]))


def test_a_balanced_build_keeps_exactly_the_smallest_class_count_of_each_split(golden_folder, tmp_path):
  # Golden splits: train 7 cats / 5 dogs, validation 1 / 3, test 2 / 2.
  builder, stored = _build_golden(golden_folder, tmp_path, "undersample")
  card = builder.info.metadata["card"]
  assert card["counts_before_balancing"] == {
      "train": {"Cat": 7, "Dog": 5}, "validation": {"Cat": 1, "Dog": 3}, "test": {"Cat": 2, "Dog": 2}}
  expected = {"train": {"Cat": 5, "Dog": 5}, "validation": {"Cat": 1, "Dog": 1}, "test": {"Cat": 2, "Dog": 2}}
  assert card["counts_after_balancing"] == expected
  found = {s: collections.Counter(p.split("/")[0] for p in paths) for s, paths in stored.items()}
  assert found == expected
  assert stored == GOLDEN_BALANCED
  balanced_out = sorted(r["path"] for r in folder_builder.read_manifest(builder.data_dir)
                        if r["status"] == "balanced_out")
  assert balanced_out == sorted(set(GOLDEN_NAMES) - {p for paths in stored.values() for p in paths})


def test_balance_none_keeps_every_usable_file(tmp_path):
  report = sample_data.write_sample_folder(str(tmp_path), per_class=6, min_size=16, max_size=24, imbalance=2.0, anomalies=False)
  cfg = FolderConfig(name="all", root=report.root, encoding="raw", image_size=8, balance="none", split_percent=(50, 25, 25))
  builder = image_folder.Builder(config=cfg, data_dir=str(tmp_path / "out"))
  builder.download_and_prepare()
  assert builder.info.splits.total_num_examples == 18
  assert builder.info.features["label"].names == ["Cat", "Dog"]


def test_image_folder_reads_any_class_folders_extensions_and_nesting(tmp_path):
  root = tmp_path / "flowers"
  rng = np.random.default_rng(0)
  for cls, names in {"daisy": ["a.JPG", "b.Png", "sub/c.jpeg"], "rose": ["d.webp", "e.BMP", "f.gif"], "tulip": ["g.jpg"]}.items():
    for name in names:
      path = root / cls / name
      path.parent.mkdir(parents=True, exist_ok=True)
      fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF"}[name.rsplit(".", 1)[1].lower()]
      sample_data.render_picture("cat", 20, 20, rng).save(path, fmt)
  (root / "daisy" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
  cfg = FolderConfig(name="flowers", root=str(root), class_names=["rose", "daisy"], balance="none", split_percent=(100, 0, 0))
  builder = image_folder.Builder(config=cfg, data_dir=str(tmp_path / "out"))
  builder.download_and_prepare()
  exs = examples(builder, "train")
  assert builder.info.features["label"].names == ["rose", "daisy"]
  assert sorted((e["image/filename"].decode(), int(e["label"])) for e in exs) == [
      ("daisy/a.JPG", 1), ("daisy/b.Png", 1), ("daisy/sub/c.jpeg", 1), ("rose/d.webp", 0), ("rose/e.BMP", 0), ("rose/f.gif", 0)
  ]
  ignored = [(r["path"], r["reason"]) for r in folder_builder.read_manifest(builder.data_dir)
             if r["status"] == "ignored"]
  assert ignored == [("daisy/.DS_Store", "not an image file name"), ("tulip/", "folder not in class_names")]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split_percent": [80, 10]}, "split_percent"),
        ({"split_percent": [90, 10, 10]}, "summing to 100"),
        ({"balance": "oversample"}, "balance"),
        ({"encoding": "gif"}, "encoding"),
        ({"encoding": "raw"}, "raw storage needs"),
        ({"channels": 2}, "channels"),
        ({"image_size": 0}, "image_size"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_bad_json_config_fails_with_the_field_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    image_folder.Builder.builder_config_cls(name="x", root="/tmp", **kwargs)


def test_json_config_as_tfds_build_passes_it():
  cfg = json.loads('{"name": "flowers", "root": "/data", "encoding": "raw", "image_size": [32, 48], "channels": 1, '
                   '"split_percent": {"train": 70, "validation": 30}}')
  config = image_folder.Builder.builder_config_cls(**cfg)
  assert config.storage == schema.ImageStorage("raw", 1, (32, 48))
  assert config.split_percent == (70.0, 30.0, 0.0)


@pytest.mark.slow
def test_tfds_build_command_line_end_to_end(tmp_path):
  sample_data.write_sample_folder(str(tmp_path / "manual"), per_class=6, min_size=24, max_size=40, seed=5)
  tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
  result = subprocess.run(
      [tfds_cli, "build", os.path.join(REPO, "builders", "pet_images"), "--manual_dir", str(tmp_path / "manual"),
       "--data_dir", str(tmp_path / "out"), "--config", "gray100"],
      capture_output=True, text=True, timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "manifest of every file not stored as is" in result.stdout
  assert "skipped by reason: {'empty': 2" in result.stdout
  ds = tfds.load("pet_images/gray100", split="train", data_dir=str(tmp_path / "out"), builder_kwargs={})
  images = [ex["image"].shape for ex in ds]
  assert images and all(s == (100, 100, 1) for s in images)


def test_possibly_duplicated_marks_exactly_the_items_brute_force_pairs_find():
  rng = np.random.default_rng(5)
  n = 3000
  digests = rng.integers(0, 2000, n, dtype=np.uint64)  # many repeats
  phashes = rng.integers(0, 2**63, n, dtype=np.uint64) | (rng.integers(0, 2, n, dtype=np.uint64) << 63)
  near = rng.choice(n, 200, replace=False)
  flips = np.uint64(1) << rng.integers(0, 64, (200, 3)).astype(np.uint64)
  phashes[near[100:]] = phashes[near[:100]] ^ flips[:100, 0] ^ flips[:100, 1] ^ flips[:100, 2]
  has = rng.random(n) < 0.9
  has[near] = True
  marked = splits.possibly_duplicated(np.zeros(n, np.uint64) + np.arange(n, dtype=np.uint64),
                                      phashes, has)
  dist = np.bitwise_count(phashes[:, None] ^ phashes[None, :]) <= 3
  dist &= has[:, None] & has[None, :]
  np.fill_diagonal(dist, False)
  assert (marked == dist.any(axis=1)).all() and marked.sum() >= 100
  repeated = splits.possibly_duplicated(digests)
  counts = np.bincount(digests.astype(np.int64))
  assert (repeated == (counts[digests.astype(np.int64)] > 1)).all()
