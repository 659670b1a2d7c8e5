"""Label files: a CSV or JSONL of `file_name,label` rows naming each image's class.

The convention of Hugging Face `imagefolder` (`metadata.csv`/`metadata.jsonl`) and of many
Kaggle competitions. `file_name` is relative to the image root, with forward slashes;
other columns are allowed and only reported. Both the image_folder builder and the folder
loader read label files here, so they apply the same rules. Labels that are all integers
(JSON numbers, or cells of digits) keep their values: class names are their decimal strings
in numeric order, so labels 0..K-1 get class index = label.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import posixpath
import re
from typing import Optional, Sequence

import tensorflow as tf

from petpipe.images import filesystems

FILE_NAME = "file_name"
LABEL = "label"
EXTENSIONS = (".csv", ".jsonl")
NOT_LISTED = "not in labels file"
# An integer label: a JSON number, or a cell of ASCII digits (optionally signed).
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


@dataclasses.dataclass(frozen=True)
class LabelFile:
  """What a label file says.

  Attributes:
    path: where it was read from (for messages).
    labels: file name (relative to the root, forward slashes) -> label name.
    extra_columns: columns other than `file_name` and `label`, in file order.
    integer_labels: every label is an integer (a JSON number, or a string of digits);
      the label names are then their decimal strings ("007" is "7").
  """

  path: str
  labels: dict
  extra_columns: tuple = ()
  integer_labels: bool = False

  def class_names(self, class_names: Optional[Sequence[str]] = None) -> list[str]:
    """`class_names` if given, else the distinct labels sorted: by value when they are all
    integers (labels 0..K-1 get class index = label), else as strings."""
    if class_names:
      return list(class_names)
    return sorted(set(self.labels.values()), key=int if self.integer_labels else None)

  def reason_left_out(self, name: str, class_names: Sequence[str]) -> Optional[str]:
    """Why the file `name` takes no part (None: it has a label among `class_names`)."""
    label = self.labels.get(name)
    if label is None:
      return NOT_LISTED
    if label not in class_names:
      return f"label {label!r} not in class_names"
    return None

  def missing(self, present) -> list[str]:
    """Names listed in the file that are not among `present` (a set of names), sorted."""
    return sorted(n for n in self.labels if n not in present)


def is_label_file(path) -> bool:
  """Whether `path` names a label file (by its extension)."""
  return isinstance(path, str) and path.lower().endswith(EXTENSIONS)


def resolve(path: str, root: str) -> str:
  """A relative label file path is taken relative to the image root."""
  if "://" in path:
    return path
  return os.path.join(root, path)  # an absolute `path` stays as it is


def read(path: str) -> LabelFile:
  """Reads and checks a label file (`tf.io.gfile`: local or any TensorFlow file system).

  Raises:
    FileNotFoundError: there is no file at `path`.
    ValueError: one line naming the file (and line): wrong extension, missing columns,
      an unparseable line, an empty or unsafe file name, or one file given two labels.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"labels file not found: {path}")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  return parse(data, path)


def parse(data: bytes, name: str) -> LabelFile:
  """Parses the bytes of a label file; `name` (its path) picks the format and is named in errors."""
  if not is_label_file(name):
    raise ValueError(f"labels file must end in .csv or .jsonl. Received: labels={name!r}")
  try:
    text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ValueError(f"labels file {name}: not UTF-8 text ({e})") from None
  rows, extra = (_csv_rows if name.lower().endswith(".csv") else _jsonl_rows)(text, name)
  for line, _, label in rows:
    if not isinstance(label, (str, int)) or isinstance(label, bool) or str(label).strip() == "":
      raise ValueError(f"labels file {name} line {line}: label must be a non-empty string or int. "
                       f"Received: label={label!r}")
  # Integer labels keep their values: "10" sorts after "2", and "007" is label 7.
  integer = bool(rows) and all(_INTEGER.match(str(label).strip()) for _, _, label in rows)
  labels, line_of = {}, {}
  for line, file_name, label in rows:
    file_name = _clean_name(file_name, name, line)
    label = str(int(str(label).strip())) if integer else str(label).strip()
    if file_name in labels and labels[file_name] != label:
      raise ValueError(
          f"labels file {name}: {file_name!r} has two labels, {labels[file_name]!r} "
          f"(line {line_of[file_name]}) and {label!r} (line {line})")
    labels.setdefault(file_name, label)
    line_of.setdefault(file_name, line)
  return LabelFile(name, labels, tuple(extra), integer)


def _clean_name(file_name, name: str, line: int) -> str:
  if not isinstance(file_name, str) or not file_name.strip():
    raise ValueError(f"labels file {name} line {line}: file_name must be a non-empty path. "
                     f"Received: file_name={file_name!r}")
  clean = posixpath.normpath(file_name.strip().replace("\\", "/"))
  if filesystems.escapes_root(clean):
    raise ValueError(f"labels file {name} line {line}: file_name must be relative to the root. "
                     f"Received: file_name={file_name!r}")
  return clean


def _check_columns(columns: Sequence[str], name: str, line: int) -> list[str]:
  missing = [c for c in (FILE_NAME, LABEL) if c not in columns]
  if missing:
    raise ValueError(f"labels file {name} line {line}: missing column(s) {missing}; "
                     f"expected {FILE_NAME!r} and {LABEL!r}. Received columns: {list(columns)}")
  return [c for c in columns if c not in (FILE_NAME, LABEL)]


def _csv_rows(text: str, name: str):
  reader = csv.reader(io.StringIO(text, newline=""))
  try:
    header = next(reader, None)
    if header is None:
      raise ValueError(f"labels file {name} line 1: empty file; expected a header with "
                       f"{FILE_NAME!r} and {LABEL!r}")
    header = [h.strip() for h in header]
    extra = _check_columns(header, name, 1)
    at_name, at_label = header.index(FILE_NAME), header.index(LABEL)
    rows = []
    for row in reader:
      line = reader.line_num
      if not any(cell.strip() for cell in row):
        continue  # blank lines
      if len(row) != len(header):
        raise ValueError(f"labels file {name} line {line}: {len(row)} field(s), the header has "
                         f"{len(header)}")
      rows.append((line, row[at_name], row[at_label]))
  except csv.Error as e:
    raise ValueError(f"labels file {name} line {reader.line_num}: not valid CSV ({e})") from None
  return rows, extra


def _jsonl_rows(text: str, name: str):
  rows, extra = [], []
  for line, raw in enumerate(text.splitlines(), 1):
    if not raw.strip():
      continue
    try:
      row = json.loads(raw)
    except json.JSONDecodeError as e:
      raise ValueError(f"labels file {name} line {line}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
      raise ValueError(f"labels file {name} line {line}: expected a JSON object, found "
                       f"{type(row).__name__}")
    for column in _check_columns(list(row), name, line):
      if column not in extra:
        extra.append(column)
    rows.append((line, row[FILE_NAME], row[LABEL]))
  return rows, extra
