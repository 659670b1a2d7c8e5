"""Every file's verdict, kept beside the records, so a later build of the same source
validates only the files that are new or changed.

Each build writes `verdicts.jsonl` into its dataset folder: a first line naming what the
verdicts depend on (the source, the limits, the format of this file), then one verdict a
line with the file's stamp (`source.stamps`: size and modification time, or a zip member's
CRC and size). A copy is kept as `<config>/.verdicts.jsonl`, outside the version folder, so
the verdicts survive `tfds build --overwrite`, which deletes that folder before building.

A build reuses the verdict of every file whose path and stamp are unchanged (with
`reuse_check="sha256"`, also whose bytes hash the same), from `reuse` (a dataset or config
folder) or else from the newest finished build of any config of this dataset made with the
same key. Writing re-reads and re-hashes every stored file anyway, so a file changed
without changing its stamp is still caught there (`changed_during_build`).

Memory: the previous build's index (each path and its line's offset, ~100 bytes a file) and
one offset a file; the verdicts themselves stream.
"""

from __future__ import annotations

import array
import dataclasses
import json
import os
from typing import Callable, Iterable, Iterator, Optional, Sequence

import tensorflow as tf

from petpipe.images import sources as sources_lib
from petpipe.images import validation

VERDICTS = "verdicts.jsonl"
KEPT = ".verdicts.jsonl"  # in the config folder: the latest build's verdicts
# Bumped whenever validation decides differently, so older verdicts are not reused.
FORMAT = 3
REUSE_CHECKS = ("stamp", "sha256")
_CHUNK = 4096


def key(source, limits: validation.Limits) -> dict:
  """What a set of verdicts depends on besides each file (JSON-able)."""
  return {"format": FORMAT, "source": repr(source), "limits": dataclasses.asdict(limits)}


def path(data_dir: str) -> str:
  return os.path.join(data_dir, VERDICTS)


def write(data_dir: str, key_: dict, stamped: Iterable[tuple[validation.Verdict, str]]
          ) -> Iterator[validation.Verdict]:
  """Writes (verdict, stamp) pairs one at a time as they come (bounded memory) and yields
  each verdict on."""
  with tf.io.gfile.GFile(path(data_dir), "w") as f:
    f.write(json.dumps(key_) + "\n")
    lines = []
    for v, stamp in stamped:
      # `vars`, not `dataclasses.asdict`: a verdict's fields are plain values, and asdict's
      # deep copy cost more than the JSON.
      lines.append(json.dumps({**vars(v), "stamp": stamp}, ensure_ascii=False) + "\n")
      if len(lines) >= 1024:
        f.write("".join(lines))
        lines = []
      yield v
    f.write("".join(lines))


def keep(data_dir: str, config_dir: str) -> None:
  """Copies this build's verdicts to `<config>/.verdicts.jsonl` (atomically)."""
  tmp = os.path.join(config_dir, KEPT + ".tmp")
  tf.io.gfile.copy(path(data_dir), tmp, overwrite=True)
  tf.io.gfile.rename(tmp, os.path.join(config_dir, KEPT), overwrite=True)


def _verdict(text: str) -> tuple[validation.Verdict, str]:
  row = json.loads(text)
  stamp = row.pop("stamp", "")
  return validation.Verdict(**row), stamp


def read(file: str) -> Iterator[validation.Verdict]:
  """The verdicts of a verdicts file, one at a time."""
  for _, v in read_selected(file):
    yield v


def read_selected(file: str, wanted: Optional[Sequence[bool]] = None
                  ) -> Iterator[tuple[int, validation.Verdict]]:
  """(ordinal, verdict) of the lines `wanted[ordinal]` selects (all when None), one at a
  time; the others are not parsed."""
  with tf.io.gfile.GFile(file) as f:
    f.readline()  # the key
    ordinal = 0
    for text in f:
      if text.strip():
        if wanted is None or wanted[ordinal]:
          yield ordinal, _verdict(text)[0]
        ordinal += 1


def _key_of(file: str) -> Optional[str]:
  try:
    with tf.io.gfile.GFile(file) as f:
      return f.readline().rstrip("\n")
  except tf.errors.OpError:
    return None


def previous(dataset_root: str, key_: dict, reuse: Optional[str] = None) -> Optional[str]:
  """The verdicts file to reuse: `reuse`'s (a dataset folder or a config folder; a one-line
  ValueError when it has none or was built from another source or with other limits), or
  the newest one under `dataset_root` (`<data_dir>/<name>`) made with the same key, or None."""
  wanted = json.dumps(key_)
  if reuse:
    found = [f for f in (os.path.join(reuse, VERDICTS), os.path.join(reuse, KEPT))
             if tf.io.gfile.exists(f)]
    if not found:
      raise ValueError(f"reuse: no {VERDICTS} in {reuse} (give a dataset folder built by "
                       f"petpipe, such as DATA_DIR/NAME/CONFIG/VERSION)")
    if _key_of(found[0]) != wanted:
      raise ValueError(f"reuse: {reuse} was built from another source, with other limits or "
                       f"by another version of petpipe; its verdicts cannot be reused")
    return found[0]
  files = tf.io.gfile.glob(os.path.join(dataset_root, "*", "*", VERDICTS))
  files = [f for f in files if not os.path.basename(os.path.dirname(f)).startswith("incomplete.")]
  files += tf.io.gfile.glob(os.path.join(dataset_root, "*", KEPT))
  matching = [f for f in files if _key_of(f) == wanted]
  if not matching:
    return None
  return max(matching, key=lambda f: (tf.io.gfile.stat(f).mtime_nsec, f))


def _index(file: str) -> dict[str, tuple[str, int]]:
  """path -> (stamp, byte offset of its line)."""
  out = {}
  with tf.io.gfile.GFile(file, "rb") as f:
    f.readline()
    offset = f.tell()
    for line in iter(f.readline, b""):
      if line.strip():
        row = json.loads(line)
        out[row["path"]] = (row.get("stamp", ""), offset)
      offset += len(line)
  return out


@dataclasses.dataclass
class Reuse:
  """Verdicts of unchanged files from a previous build; the rest from `validate`.

  Attributes:
    previous: the previous verdicts file, or None (every file validated).
    check: "stamp" (path, size and modification time) or "sha256" (also the bytes' hash).
    reused: how many verdicts were reused (after `stamped` is consumed).
  """

  previous: Optional[str]
  check: str = "stamp"
  reused: int = 0

  def stamped(self, source, candidates: Sequence[sources_lib.Candidate],
              validate: Callable[[Sequence], Iterable[validation.Verdict]]
              ) -> Iterator[tuple[validation.Verdict, str]]:
    """(verdict, stamp) of every candidate, in their order."""
    index = _index(self.previous) if self.previous else {}
    offsets = array.array("q")  # a reused line's offset, or -1: validate
    todo, todo_stamps = sources_lib.CandidateList(), []
    with (tf.io.gfile.GFile(self.previous, "rb") if self.previous else _Nothing()) as old:
      for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start:start + _CHUNK]
        for c, stamp in zip(chunk, source.stamps(chunk)):
          hit = index.get(c.path) if _reusable(c) and stamp else None
          if hit and hit[0] == stamp and self._same_bytes(source, c, old, hit[1]):
            offsets.append(hit[1])
          else:
            offsets.append(-1)
            todo.append(c)
            todo_stamps.append(stamp)
      del index
      validated = iter(validate(todo)) if len(todo) else iter(())
      fresh_stamps = iter(todo_stamps)
      for i, offset in enumerate(offsets):
        if offset < 0:
          yield next(validated), next(fresh_stamps)
        else:
          old.seek(offset)
          v, stamp = _verdict(old.readline().decode("utf-8"))
          self.reused += 1
          # The class comes from today's listing (a label file may have changed it).
          yield dataclasses.replace(v, class_dir=candidates[i].class_dir), stamp

  def _same_bytes(self, source, candidate, old, offset: int) -> bool:
    if self.check != "sha256":
      return True
    old.seek(offset)
    v, _ = _verdict(old.readline().decode("utf-8"))
    try:
      return bool(v.sha256) and validation.sha256_of(source.read(candidate.path)) == v.sha256
    except OSError:
      return False


def _reusable(c: sources_lib.Candidate) -> bool:
  """Only image files decided by their bytes: the rest are decided again (no decode)."""
  return c.is_image and not c.skip_reason and not c.ignore_reason


class _Nothing:
  def __enter__(self):
    return None

  def __exit__(self, *exc):
    return False
