"""Label files (CSV/JSONL `file_name,label`): the parser's rules, the image_folder builder
and the folder loader applying them the same way."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from petpipe import pipeline
from petpipe.builders import folder_builder
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from tests.test_cloud_paths import to_ram
from petpipe.pipeline import folder_loader
from petpipe.pipeline import label_files

# file -> label; "images/gone.jpg" has no file, "images/unlisted*.jpg" are not listed.
LABELS = {f"images/{i:02d}.jpg": ("cat", "dog", "bird")[i % 3] for i in range(12)}
LABELS["images/gone.jpg"] = "cat"


def _write_images(root, names, seed=0):
  rng = np.random.default_rng(seed)
  for name in names:
    path = os.path.join(root, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(path)


def _csv(rows, header="file_name,label,photographer"):
  return header + "\n" + "".join(f"{n},{l},someone\n" for n, l in rows)


@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory) -> str:
  """images/*.jpg labelled by metadata.csv and metadata.jsonl (one extra column each)."""
  root = str(tmp_path_factory.mktemp("labelled") / "root")
  _write_images(root, [n for n in LABELS if n != "images/gone.jpg"]
                + ["images/unlisted0.jpg", "images/unlisted1.jpg"])
  with open(os.path.join(root, "metadata.csv"), "w") as f:
    f.write(_csv(LABELS.items()))
  with open(os.path.join(root, "metadata.jsonl"), "w") as f:
    f.writelines(json.dumps({"file_name": n, "label": l, "source": "web"}) + "\n"
                 for n, l in LABELS.items())
  return root


def _build(root, data_dir, name, **kwargs):
  kwargs = {"balance": "none", "split_percent": (100, 0, 0), **kwargs}
  builder = image_folder.Builder(config=FolderConfig(name=name, root=root, **kwargs),
                                 data_dir=str(data_dir))
  builder.download_and_prepare()
  return builder


def _labelled(builder, split="train"):
  names = builder.info.features["label"].names
  return sorted((e["image/filename"].decode(), names[int(e["label"])])
                for e in tfds.as_numpy(builder.as_dataset(split=split)))


@pytest.fixture(scope="module", params=["metadata.csv", "metadata.jsonl"])
def built(request, labelled_root, tmp_path_factory):
  name = request.param.replace(".", "_")
  return _build(labelled_root, tmp_path_factory.mktemp("out"), name, labels=request.param)


def test_label_file_gives_each_file_its_label_and_sorted_class_names(built):
  assert built.info.features["label"].names == ["bird", "cat", "dog"]
  assert _labelled(built) == sorted((n, l) for n, l in LABELS.items() if n != "images/gone.jpg")


def test_files_not_in_the_label_file_are_ignored_in_the_manifest(built):
  rows = [r for r in folder_builder.read_manifest(built.data_dir) if r["status"] == "ignored"]
  other = "metadata.jsonl" if built.builder_config.labels.endswith(".csv") else "metadata.csv"
  assert [(r["path"], r["reason"]) for r in rows] == [
      ("images/unlisted0.jpg", "not in labels file"), ("images/unlisted1.jpg", "not in labels file"),
      (other, "not in labels file")]


def test_the_label_file_in_use_is_never_an_image_candidate(built):
  # The other label file of the fixture is an unlisted file like any other; the one in use is not listed.
  paths = {r["path"] for r in folder_builder.read_manifest(built.data_dir)}
  assert built.builder_config.labels not in paths


def test_names_without_a_file_are_listed_as_missing_in_manifest_and_card(built):
  rows = [r for r in folder_builder.read_manifest(built.data_dir) if r["status"] == "missing"]
  assert [r["path"] for r in rows] == ["images/gone.jpg"]
  card = built.info.metadata["card"]["labels_file"]
  assert card["missing_files"] == 1 and card["rows"] == len(LABELS)


def test_extra_columns_are_listed_in_the_card(built):
  extra = built.info.metadata["card"]["labels_file"]["extra_columns"]
  assert extra == (["photographer"] if built.builder_config.labels.endswith(".csv") else ["source"])


def test_class_names_choose_and_order_the_labels_and_other_rows_are_ignored(labelled_root, tmp_path):
  builder = _build(labelled_root, tmp_path, "two", labels="metadata.csv", class_names=["dog", "cat"])
  assert builder.info.features["label"].names == ["dog", "cat"]
  assert {l for _, l in _labelled(builder)} == {"dog", "cat"}
  reasons = {r["path"]: r["reason"] for r in folder_builder.read_manifest(builder.data_dir)}
  birds = [n for n, l in LABELS.items() if l == "bird"]
  assert all(reasons[n] == "label 'bird' not in class_names" for n in birds)


def test_labelled_build_splits_and_balances_as_a_folder_build(labelled_root, tmp_path):
  builder = _build(labelled_root, tmp_path, "split", labels="metadata.jsonl", balance="undersample",
                   split_percent=(50, 50, 0))
  card = builder.info.metadata["card"]
  # Split by the path rule of file_name (as a folder build splits "class/file"): train holds
  # 3 cats, 2 dogs and 1 bird, validation 3 birds, 2 dogs and 1 cat; each keeps one a class.
  assert card["counts_before_balancing"] == {"train": {"bird": 1, "cat": 3, "dog": 2},
                                             "validation": {"bird": 3, "cat": 1, "dog": 2}}
  assert card["counts_after_balancing"] == {"train": {"bird": 1, "cat": 1, "dog": 1},
                                            "validation": {"bird": 1, "cat": 1, "dog": 1}}
  assert _labelled(builder, "train") == [("images/05.jpg", "bird"), ("images/09.jpg", "cat"),
                                         ("images/10.jpg", "dog")]
  assert _labelled(builder, "validation") == [("images/04.jpg", "dog"), ("images/06.jpg", "cat"),
                                              ("images/08.jpg", "bird")]


def test_an_absolute_label_file_outside_the_root_is_read(labelled_root, tmp_path):
  outside = tmp_path / "labels.csv"
  outside.write_text(_csv(list(LABELS.items())[:3]))
  builder = _build(labelled_root, tmp_path / "out", "outside", labels=str(outside),
                   allow_empty_classes=True)
  assert len(_labelled(builder)) == 3


def test_a_zip_root_reads_the_label_file_inside_it(labelled_root, tmp_path):
  archive = tmp_path / "root.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for folder, _, files in os.walk(labelled_root):
      for name in files:
        full = os.path.join(folder, name)
        zf.write(full, "root/" + os.path.relpath(full, labelled_root))
  builder = _build(str(archive), tmp_path / "out", "zipped", labels="metadata.csv")
  assert _labelled(builder) == sorted((n, l) for n, l in LABELS.items() if n != "images/gone.jpg")
  ignored = {r["path"] for r in folder_builder.read_manifest(builder.data_dir) if r["status"] == "ignored"}
  assert ignored == {"images/unlisted0.jpg", "images/unlisted1.jpg", "metadata.jsonl"}


def test_exact_copies_with_different_labels_are_skipped_as_in_folders(tmp_path):
  root = str(tmp_path / "root")
  _write_images(root, ["a.jpg", "b.jpg", "c.jpg"])
  with open(os.path.join(root, "a.jpg"), "rb") as f:
    data = f.read()
  with open(os.path.join(root, "copy.jpg"), "wb") as f:
    f.write(data)
  (tmp_path / "root" / "labels.csv").write_text(_csv([("a.jpg", "x"), ("b.jpg", "x"), ("c.jpg", "y"),
                                                      ("copy.jpg", "y")]))
  builder = _build(root, tmp_path / "out", "dups", labels="labels.csv")
  assert _labelled(builder) == [("b.jpg", "x"), ("c.jpg", "y")]
  reasons = {r["path"]: r["reason"] for r in folder_builder.read_manifest(builder.data_dir)}
  assert reasons["a.jpg"].startswith("duplicate_conflict") and reasons["copy.jpg"].startswith(
      "duplicate_conflict")


def test_a_pre_split_labelled_root_takes_each_split_from_the_first_folder(tmp_path):
  root = str(tmp_path / "root")
  _write_images(root, ["train/0.jpg", "train/1.jpg", "test/2.jpg", "test/3.jpg", "loose.jpg"])
  (tmp_path / "root" / "labels.csv").write_text(_csv([
      ("train/0.jpg", "x"), ("train/1.jpg", "y"), ("test/2.jpg", "x"), ("test/3.jpg", "y"), ("loose.jpg", "x")]))
  builder = image_folder.Builder(config=FolderConfig(name="given", root=root, labels="labels.csv", balance="none"),
                                 data_dir=str(tmp_path / "out"))
  builder.download_and_prepare()
  assert sorted(builder.info.splits) == ["test", "train"]
  assert _labelled(builder, "train") == [("train/0.jpg", "x"), ("train/1.jpg", "y")]
  assert _labelled(builder, "test") == [("test/2.jpg", "x"), ("test/3.jpg", "y")]
  reasons = {r["path"]: r["reason"] for r in folder_builder.read_manifest(builder.data_dir)}
  assert reasons["loose.jpg"] == "not in a split folder"


@pytest.mark.slow
def test_a_labelled_root_on_beam_gives_the_local_build(labelled_root, tmp_path):
  beam = pytest.importorskip("apache_beam")
  local = _build(labelled_root, tmp_path / "local", "beam_check", labels="metadata.csv", split_percent=None)
  config = FolderConfig(name="beam_check", root=labelled_root, labels="metadata.csv", balance="none")
  on_beam = image_folder.Builder(config=config, data_dir=str(tmp_path / "beam"))
  options = beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])
  on_beam.download_and_prepare(download_config=tfds.download.DownloadConfig(beam_options=options))
  assert {s: _labelled(on_beam, s) for s in on_beam.info.splits} == {
      s: _labelled(local, s) for s in local.info.splits}
  assert folder_builder.read_manifest(on_beam.data_dir) == folder_builder.read_manifest(local.data_dir)


# The parser's rules (shared by the builder and the loader) -----------------------------


def test_a_file_named_twice_with_the_same_label_counts_once():
  parsed = label_files.parse(b"file_name,label\na.jpg,cat\nb.jpg,dog\n./a.jpg,cat\n", "m.csv")
  assert parsed.labels == {"a.jpg": "cat", "b.jpg": "dog"}


def test_a_file_named_twice_with_different_labels_is_an_error_naming_it_and_both_labels():
  with pytest.raises(ValueError) as info:
    label_files.parse(b'{"file_name": "a.jpg", "label": "cat"}\n{"file_name": "a.jpg", "label": "dog"}\n',
                      "m.jsonl")
  message = str(info.value)
  assert "\n" not in message and "'a.jpg'" in message and "'cat'" in message and "'dog'" in message
  assert "m.jsonl" in message


@pytest.mark.parametrize("name, data, expected", [
    ("m.csv", b"path,label\na.jpg,cat\n", r"m\.csv line 1: missing column\(s\) \['file_name'\]"),
    ("m.jsonl", b'{"file_name": "a.jpg", "label": "cat"}\n{"file_name": "b.jpg"}\n',
     r"m\.jsonl line 2: missing column\(s\) \['label'\]"),
    ("m.jsonl", b'{"file_name": "a.jpg", "label": "cat"}\n{"file_name": "b.jpg", \n',
     r"m\.jsonl line 2: not valid JSON"),
    ("m.jsonl", b'["a.jpg", "cat"]\n', r"m\.jsonl line 1: expected a JSON object"),
    ("m.csv", b"file_name,label\na.jpg,cat\nb.jpg,dog,extra\n", r"m\.csv line 3: 3 field\(s\)"),
    ("m.csv", b"file_name,label\n,cat\n", r"m\.csv line 2: file_name must be a non-empty path"),
    ("m.csv", b"file_name,label\n../a.jpg,cat\n", r"m\.csv line 2: file_name must be relative"),
    ("m.csv", b"file_name,label\na.jpg,\n", r"m\.csv line 2: label must be"),
    ("m.csv", b"", r"m\.csv line 1: empty file"),
    ("m.txt", b"file_name,label\n", r"must end in \.csv or \.jsonl"),
])
def test_a_bad_label_file_is_a_one_line_error_naming_the_file_and_line(name, data, expected):
  with pytest.raises(ValueError, match=expected) as info:
    label_files.parse(data, name)
  assert "\n" not in str(info.value)


def test_a_missing_label_file_is_an_error_naming_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="labels file not found: .*nowhere.csv"):
    label_files.read(str(tmp_path / "nowhere.csv"))


def test_builder_refuses_a_label_file_that_is_not_csv_or_jsonl():
  with pytest.raises(ValueError, match="labels must be the path of a .csv or .jsonl label file"):
    FolderConfig(name="x", root="/tmp", labels="labels.txt")


def test_builder_with_a_conflicting_label_file_fails_naming_the_file(tmp_path):
  root = str(tmp_path / "root")
  _write_images(root, ["a.jpg"])
  (tmp_path / "root" / "labels.csv").write_text("file_name,label\na.jpg,cat\na.jpg,dog\n")
  with pytest.raises(ValueError, match=r"labels\.csv: 'a\.jpg' has two labels, 'cat' \(line 2\) and 'dog'"):
    _build(root, tmp_path / "out", "conflict", labels="labels.csv")


# Integer labels -----------------------------------------------------------------------

# JSON numbers 0..11 (as string order they would be 0, 1, 10, 11, 2, ...), and CSV cells of
# digits that are not 0..K-1 (string order: 007, 10, 200; numeric: 7, 10, 200).
NUMBERED = {f"n/{i:02d}.jpg": i % 12 for i in range(24)}
SPARSE = {f"n/{i:02d}.jpg": ("007", "10", "200")[i % 3] for i in range(24)}


@pytest.fixture(scope="module")
def numbered_root(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("numbered"))
  _write_images(root, list(NUMBERED), seed=4)
  with open(os.path.join(root, "numbers.jsonl"), "w") as f:
    f.writelines(json.dumps({"file_name": n, "label": v}) + "\n" for n, v in NUMBERED.items())
  with open(os.path.join(root, "sparse.csv"), "w") as f:
    f.write("file_name,label\n" + "".join(f"{n},{v}\n" for n, v in SPARSE.items()))
  return root


def test_integer_labels_keep_their_values_in_the_builder_and_the_folder_loader(numbered_root, tmp_path):
  expected_names = [str(i) for i in range(12)]
  builder = _build(numbered_root, tmp_path, "numbers", labels="numbers.jsonl")
  assert builder.info.features["label"].names == expected_names
  stored = {e["image/filename"].decode(): int(e["label"])
            for e in tfds.as_numpy(builder.as_dataset(split="train"))}
  assert stored == NUMBERED  # class index = the label's value
  ds = pipeline.image_dataset_from_directory(numbered_root, labels="numbers.jsonl", image_size=(16, 16),
                                             shuffle=False, verbose=False)
  assert ds.class_names == expected_names
  labels = np.concatenate([l.numpy() for _, l in ds])
  assert {os.path.relpath(p, numbered_root): int(l) for p, l in zip(ds.file_paths, labels)} == NUMBERED


def test_integer_labels_that_are_not_0_to_k_minus_1_take_their_numeric_order(numbered_root, tmp_path):
  order = {"007": 0, "10": 1, "200": 2}
  builder = _build(numbered_root, tmp_path, "sparse", labels="sparse.csv")
  assert builder.info.features["label"].names == ["7", "10", "200"]
  stored = {e["image/filename"].decode(): int(e["label"])
            for e in tfds.as_numpy(builder.as_dataset(split="train"))}
  assert stored == {n: order[v] for n, v in SPARSE.items()}
  ds = pipeline.image_dataset_from_directory(numbered_root, labels="sparse.csv", image_size=(16, 16),
                                             shuffle=False, verbose=False)
  assert ds.class_names == ["7", "10", "200"]
  labels = np.concatenate([l.numpy() for _, l in ds])
  assert {os.path.relpath(p, numbered_root): int(l) for p, l in zip(ds.file_paths, labels)} == \
      {n: order[v] for n, v in SPARSE.items()}


def test_labels_that_are_not_all_integers_stay_strings_in_string_order():
  parsed = label_files.parse(b"file_name,label\na.jpg,10\nb.jpg,2\nc.jpg,x\n", "l.csv")
  assert not parsed.integer_labels and parsed.class_names() == ["10", "2", "x"]


# The folder loader ------------------------------------------------------------------


def test_loader_labels_files_from_the_label_file_and_lists_the_others_as_left_out(labelled_root):
  ds = pipeline.image_dataset_from_directory(labelled_root, labels="metadata.csv", image_size=(16, 16),
                                             batch_size=4, shuffle=False, verbose=False)
  assert ds.class_names == ["bird", "cat", "dog"]
  labels = np.concatenate([l.numpy() for _, l in ds])
  got = {os.path.relpath(p, labelled_root): ds.class_names[l] for p, l in zip(ds.file_paths, labels)}
  assert got == {n: l for n, l in LABELS.items() if n != "images/gone.jpg"}
  assert ds.skip_reasons == {os.path.join(labelled_root, "images", f"unlisted{i}.jpg"): "not in labels file"
                             for i in range(2)}
  assert ds.missing_files == ["images/gone.jpg"]


def test_loader_label_file_index_shuffles_paths_and_labels_together(labelled_root):
  paths, labels, names, _, _ = folder_loader._index_label_file(
      labelled_root, "metadata.jsonl", None, shuffle=True, seed=3, follow_links=False, verbose=False)
  assert paths != sorted(paths)
  assert [names[l] for l in labels] == [LABELS[os.path.relpath(p, labelled_root)] for p in paths]


def test_loader_label_file_with_class_names_leaves_other_labels_out(labelled_root):
  ds = pipeline.image_dataset_from_directory(labelled_root, labels="metadata.csv", class_names=["dog", "cat"],
                                             image_size=(16, 16), shuffle=False, verbose=False)
  assert ds.class_names == ["dog", "cat"]
  birds = {os.path.join(labelled_root, n) for n, l in LABELS.items() if l == "bird"}
  assert {p for p, r in ds.skip_reasons.items() if r == "label 'bird' not in class_names"} == birds


def test_loader_label_file_conflict_is_an_error(tmp_path):
  _write_images(str(tmp_path), ["a.jpg"])
  (tmp_path / "labels.jsonl").write_text('{"file_name": "a.jpg", "label": 1}\n{"file_name": "a.jpg", "label": 2}\n')
  with pytest.raises(ValueError, match=r"'a\.jpg' has two labels, '1' \(line 1\) and '2' \(line 2\)"):
    pipeline.image_dataset_from_directory(str(tmp_path), labels="labels.jsonl", verbose=False)


def test_loader_label_file_with_cache_dir_delivers_the_uncached_labels(labelled_root, tmp_path):
  kwargs = dict(labels="metadata.csv", image_size=(16, 16), shuffle=False, verbose=False)
  cached = pipeline.image_dataset_from_directory(labelled_root, cache_dir=str(tmp_path), **kwargs)
  plain = pipeline.image_dataset_from_directory(labelled_root, **kwargs)
  assert cached.file_paths == plain.file_paths
  assert cached.skip_reasons == plain.skip_reasons
  labels = lambda ds: np.concatenate([l.numpy() for _, l in ds]).tolist()
  assert labels(cached) == labels(plain)


def test_a_labelled_root_on_ram_gives_the_local_build(labelled_root, built, tmp_path):
  remote = _build(to_ram(labelled_root), tmp_path, "ram_labelled", labels=built.builder_config.labels)
  assert _labelled(remote) == _labelled(built)
