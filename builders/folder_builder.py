"""The shared TFDS builder: validate → split → balance → record the card → write.

`image_folder` and `pet_images` subclass `FolderBuilder`; they only say where
the files are and what the classes are called.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import json
import os
import pathlib
from typing import Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.builders import card as card_lib
from petpipe.builders import layouts
from petpipe.builders import quality
from petpipe.builders import splits as splits_lib
from petpipe.builders import stable_records
from petpipe.builders import storage as storage_lib
from petpipe.builders import verdict_store
from petpipe.builders.folder_config import FolderConfig, storage_configs  # noqa: F401  (re-exported)
from petpipe.images import filesystems
from petpipe.images import validate_files
from petpipe.images import validation
from petpipe.pipeline import folder_lock
from petpipe.pipeline import schema
from petpipe.pipeline import verify as verify_lib

MANIFEST = "manifest.jsonl"
FILES = verify_lib.FILES  # every stored file: path, split, label, size, sha256
CHANGED = "changed_during_build"
_WINDOW = 64  # examples encoded ahead of the writer: bounds memory


class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds `root/<class>/**` image folders into validated, balanced records."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = storage_configs()

  # Subclass hooks -------------------------------------------------------------

  def _label_names(self) -> list[str]:
    """Label names in label order (the ClassLabel names)."""
    raise NotImplementedError

  def _source(self, dl_manager) -> tuple[object, dict[str, str]]:
    """The file source and a map class folder → label name."""
    raise NotImplementedError

  # TFDS API -------------------------------------------------------------------

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=schema.features(self.builder_config.storage, self._label_names()),
        supervised_keys=(schema.IMAGE, schema.LABEL),
        # Without one, TFDS names a tensorflow.org catalog page, which these datasets do not
        # have: the README beside the builder (shipped with it, and its description) is theirs.
        homepage=self._readme_uri(),
        metadata=tfds.core.MetadataDict(),
    )

  def _readme_uri(self) -> str | None:
    """A `file://` URI of the README.md beside the builder, or None without one."""
    if self.pkg_dir_path is None:
      return None
    readme = os.path.abspath(os.path.join(os.fspath(self.pkg_dir_path), "README.md"))
    return pathlib.Path(readme).as_uri() if os.path.isfile(readme) else None

  def _split_generators(self, dl_manager):
    source, label_of_dir = self._source(dl_manager)
    names = self._label_names()
    label = {n: i for i, n in enumerate(names)}
    listing = source.listing()
    quality.check_classes(self.builder_config, source, names, label_of_dir, listing)
    if not any(c.is_image for c in listing.candidates):
      raise ValueError(f"No image files found in {source}.")
    if self._on_beam:
      return self._beam_split_generators(source, listing.candidates, label_of_dir, label)
    verdicts = self._validated(source, listing.candidates)
    by_split = self._plan_and_record(verdicts, label_of_dir, listing.ignored_folders, source)
    self._written = collections.defaultdict(list)  # split -> (verdict, label) stored
    self._changed = []  # (split, verdict, label): bytes differ from the validated ones
    return {
        split: self._generate_examples(
            source, [(v, label[label_of_dir[v.class_dir]]) for c in names for v in per_class.get(c, [])],
            split,
        )
        for split, per_class in by_split.items()
    }

  def _validated(self, source, candidates) -> list[validation.Verdict]:
    """Every candidate's verdict: validated here, or reused from another config's build of the
    same unchanged source (`tfds build` builds each config in turn)."""
    limits = self.builder_config.limits
    key = verdict_store.key(source, candidates, limits)
    verdicts = verdict_store.find(os.path.dirname(os.path.dirname(self.data_path)), key)
    if verdicts is None:
      verdicts = validate_files.validate(source, candidates, limits)
    verdict_store.write(self.data_dir, key, verdicts)
    return verdicts

  def _plan_and_record(self, verdicts, label_of_dir, ignored_folders=(), source=None) -> dict:
    """Splits and balances usable files; writes the manifest and the card.

    A pre-split source (`split_folders`) gives each file's split; a labelled source lists
    the names its label file gives without a file (`missing_files`).
    """
    config = self.builder_config
    names = self._label_names()
    quality.check_usable(config, verdicts, label_of_dir)
    verdicts, split_key, duplicates = _resolve_duplicates(
        verdicts, label_of_dir, getattr(config, "duplicates", "keep"), apply=not self._on_beam)
    usable = [v for v in verdicts if v.usable and v.class_dir in label_of_dir]
    given = bool(getattr(source, "split_folders", None))
    if not usable:
      raise ValueError(f"No usable images: {len(verdicts)} files found, none decodable.")
    found = collections.Counter(label_of_dir[v.class_dir] for v in usable)
    empty = [n for n in names if not found[n]]
    if empty and not getattr(config, "allow_empty_classes", False):
      raise ValueError(
          f"Class(es) with no usable image: {empty} (skip reasons in the files listed under them); "
          'fix the data or class_names, or set "allow_empty_classes": true.'
      )
    quality.check_enough_classes(config, [n for n in names if found[n]], "with usable images")
    by_split = splits_lib.group(
        usable,
        # Exact duplicates share their group's key (its first path): one split together.
        lambda v: layouts.split_of_path(source, v.path, config.percentages, split_key.get(v.path)),
        lambda v: label_of_dir[v.class_dir],
    )
    before = _counts(by_split, names)
    dropped = []
    if config.balance == "undersample":
      # Classes allowed to be empty take no part: they would cut every class to 0.
      present = [n for n in names if found[n]]
      for split in by_split:
        # Given splits may lack a class: balance among the classes that split has.
        in_split = [n for n in present if by_split[split].get(n)] if given else present
        by_split[split], out = splits_lib.balance(by_split[split], lambda v: v.path, in_split)
        dropped += [v for vs in out.values() for v in vs]
    not_kept = [v for v in verdicts if v.status != validation.KEPT]
    missing = list(getattr(source, "missing_files", list)())
    _write_manifest(os.path.join(self.data_dir, MANIFEST), not_kept, dropped, ignored_folders, missing)
    self.info.metadata["card"] = card_lib.make_card(
        verdicts, before, _counts(by_split, names), len(dropped), config
    )
    self.info.metadata["card"]["ignored_folders"] = [path.rstrip("/") for path, _ in ignored_folders]
    self.info.metadata["card"]["ignored_by_reason"] = card_lib.ignored_by_reason(
        verdicts, ignored_folders)
    self.info.metadata["card"]["duplicates"] = dict(
        duplicates, near_duplicates=bool(getattr(config, "near_duplicates", False)))
    self.info.metadata["card"].update(getattr(source, "card_entries", dict)())
    if given:
      # Copies across given splits stay where the folders put them: reported, never moved.
      self.info.metadata["card"]["duplicates"]["groups_across_given_splits"] = (
          layouts.groups_across_splits(verdicts, source, label_of_dir))
      self.info.metadata["card"]["storage"]["split_percent"] = None
    return {
        split: by_split[split]
        for split in splits_lib.SPLITS
        if any(by_split.get(split, {}).get(c) for c in names)
    }

  def _beam_split_generators(self, source, candidates, label_of_dir, label):
    # Imported here: it imports apache_beam, which only Beam builds need.
    from petpipe.builders import beam_build

    config = self.builder_config
    by_split = {}
    for cand in candidates:
      by_split.setdefault(layouts.split_of_path(source, cand.path, config.percentages), []).append(cand)
    return {
        split: beam_build.split_examples(
            by_split[split],
            source=source,
            limits=config.limits,
            label_of_dir=label_of_dir,
            label_index=label,
            balance=config.balance == "undersample",
            make_example=self._example_fn(source),
            verdict_prefix=os.path.join(self.data_dir, beam_build.VERDICTS_DIR, split),
            balance_present_only=bool(getattr(source, "split_folders", None)),
        )
        for split in splits_lib.SPLITS
        if split in by_split
    }

  def _example_fn(self, source):
    config = self.builder_config
    return functools.partial(
        _example,
        source=source,
        storage=config.storage,
        max_side=config.max_side,
        jpeg_quality=config.jpeg_quality,
        max_bytes=config.limits.max_file_bytes,
    )

  def _generate_examples(self, source, items: Sequence[tuple[validation.Verdict, int]], split: str = ""):
    config = self.builder_config
    make = self._example_fn(source)
    workers = os.cpu_count() or 1

    def checked(item, result):
      # A file whose bytes now differ from the validated ones is not stored (recorded instead).
      if result is None:
        self._changed.append((split, *item))
        return None
      self._written[split].append(item)
      return result

    # TFDS orders records by key hash, so the order examples are yielded in is free:
    # files stored as is go straight through, the rest are encoded in threads.
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      pending = collections.deque()

      def ready():
        item, future = pending.popleft()
        return checked(item, future.result())

      for item in items:
        if storage_lib.stored_as_is(item[0], config.storage, config.max_side):
          if (result := checked(item, make(item))) is not None:
            yield result
          continue
        pending.append((item, pool.submit(make, item)))
        if len(pending) >= _WINDOW:  # bounds memory: encoded results waiting
          if (result := ready()) is not None:
            yield result
      while pending:
        if (result := ready()) is not None:
          yield result

  def _record_written(self) -> None:
    """After writing: files.jsonl of every stored file; changed files into manifest and card."""
    rows = [
        {"path": v.path, "split": split, "label": label, "size_bytes": v.size_bytes, "sha256": v.sha256}
        for split, items in self._written.items() for v, label in items
    ]
    rows.sort(key=lambda r: r["path"])
    _write_jsonl(os.path.join(self.data_dir, FILES), rows)
    if not self._changed:
      return
    names = self._label_names()
    card = self.info.metadata["card"]
    path = os.path.join(self.data_dir, MANIFEST)
    with tf.io.gfile.GFile(path) as f:
      manifest = [json.loads(line) for line in f if line.strip()]
    for split, v, label in self._changed:
      manifest.append({"path": v.path, "status": validation.SKIPPED,
                       "reason": f"{CHANGED}: the file's bytes differ from those validated",
                       "size_bytes": v.size_bytes, "sha256": v.sha256})
      card["counts_after_balancing"][split][names[label]] -= 1
      card["status"][v.status] -= 1
      card["status"][validation.SKIPPED] = card["status"].get(validation.SKIPPED, 0) + 1
      card["skipped_by_reason"][CHANGED] = card["skipped_by_reason"].get(CHANGED, 0) + 1
    manifest.sort(key=lambda r: (r["status"], r["path"]))
    _write_jsonl(path, manifest)

  def _example_writer(self):
    # Sorted map entries in every record (local and Beam), for this builder only.
    return stable_records.StableExampleWriter(file_format=self.info.file_format)

  def _download_and_prepare(self, dl_manager, download_config=None):
    self._on_beam = bool(download_config and (download_config.beam_runner or download_config.beam_options))
    result = super()._download_and_prepare(dl_manager, download_config)
    if not self._on_beam:
      self._record_written()
    if self._on_beam:
      from petpipe.builders import beam_build  # Beam builds only: it imports apache_beam.

      source, label_of_dir = self._source(dl_manager)
      self._plan_and_record(beam_build.read_verdicts(self.data_dir), label_of_dir,
                            source.listing().ignored_folders, source)
    return result

  def download_and_prepare(self, *args, **kwargs):
    with build_lock(self.data_dir):
      self._locked_download_and_prepare(*args, **kwargs)

  def _locked_download_and_prepare(self, *args, **kwargs):
    already_built = tf.io.gfile.exists(os.path.join(self.data_dir, "dataset_info.json"))
    if not already_built:
      remove_leftovers(self.data_dir)
    super().download_and_prepare(*args, **kwargs)
    if not already_built and "card" in self.info.metadata:
      # Printed, not logged: the tfds command line hides INFO logs.
      print(card_lib.summary(self.info.metadata["card"], self.data_dir), flush=True)


# Helpers --------------------------------------------------------------------


# A second build of the same folder fails at once naming the holder, instead of deleting
# the first one's unfinished folder.
BuildLockedError = folder_lock.FolderLockedError


def build_lock(data_dir: str):
  """An exclusive lock on building `data_dir` (`<config>/.<version>.lock` holding the PID)."""
  parent, version = os.path.split(filesystems.normpath(data_dir))
  return folder_lock.exclusive(os.path.join(parent, f".{version}.lock"),
                               f"{data_dir} is being built")


def remove_leftovers(data_dir: str) -> list[str]:
  """Deletes what a killed build of `data_dir` left behind.

  TFDS builds in `<config>/incomplete.XXXXXX_<version>/` and renames it to
  `<config>/<version>/` only when complete, so a killed build leaves that
  folder (never a half-written final folder). One build of a dataset at a time.
  """
  parent, version = os.path.split(filesystems.normpath(data_dir))
  leftovers = tf.io.gfile.glob(os.path.join(parent, f"incomplete.*_{version}"))
  for path in leftovers:
    tf.io.gfile.rmtree(path)
  if leftovers:
    print(f"Removed {len(leftovers)} unfinished build folder(s) of {data_dir}", flush=True)
  return leftovers


def _example(item, source, storage, max_side, jpeg_quality, max_bytes=None):
  """The example of one validated file, or None if its bytes are no longer those validated."""
  verdict, label = item
  try:
    data = validation.read_bounded(source, verdict.path, max_bytes or verdict.size_bytes)
  except (OSError, ValueError):
    return None
  if data is None or (verdict.sha256 and validation.sha256_of(data) != verdict.sha256):
    return None
  image = storage_lib.encode(data, verdict, storage, max_side, jpeg_quality)
  return verdict.path, {schema.IMAGE: image, schema.LABEL: label, schema.FILENAME: verdict.path}


def _counts(by_split, names) -> dict:
  return {
      split: {n: len(by_split[split].get(n, [])) for n in names}
      for split in splits_lib.SPLITS
      if split in by_split
  }


_MAX_GROUPS_LISTED = 100


def _resolve_duplicates(verdicts, label_of_dir, mode: str, apply: bool = True):
  """(verdicts, path -> split key, card entry) for exact duplicates (same sha256).

  Every member of a group is split by the group's first path, so copies never sit in two
  splits. Groups spanning several classes (conflicting labels) are skipped unless `mode` is
  "keep"; "drop" also keeps one file of every other group. On Beam, whose splits are
  assigned before validation, groups are only reported (`apply=False`).
  """
  usable = [v for v in verdicts if v.usable and v.class_dir in label_of_dir]
  # Near duplicates: perceptual hashes (computed only when asked for) at most 3 bits apart.
  groups = splits_lib.duplicate_groups(usable, lambda v: v.sha256, lambda v: v.path, lambda v: v.phash)
  split_key, replaced, listed = {}, {}, []
  conflicts = 0
  for group in groups:
    same = "same bytes" if len({v.sha256 for v in group}) == 1 else "near-identical picture"
    first = group[0].path
    classes = sorted({label_of_dir[v.class_dir] for v in group})
    conflict = len(classes) > 1
    conflicts += conflict
    for v in group:
      split_key[v.path] = first
    if conflict and mode != "keep":
      for v in group:
        others = ", ".join(o.path for o in group if o is not v)
        replaced[v.path] = dataclasses.replace(v, status=validation.SKIPPED, reason=(
            f"duplicate_conflict: {same} as {others} in another class"))
    elif mode == "drop":
      for v in group[1:]:
        replaced[v.path] = dataclasses.replace(v, status=validation.SKIPPED, reason=(
            f"duplicate: {same} as {first}"))
    if len(listed) < _MAX_GROUPS_LISTED:
      listed.append({"sha256": group[0].sha256, "phash": group[0].phash, "paths": [v.path for v in group],
                     "classes": classes, "conflict": conflict})
  if apply:
    verdicts = [replaced.get(v.path, v) for v in verdicts]
  else:
    split_key = {}
  card = {
      "mode": mode,
      "groups": len(groups),
      "files_in_groups": sum(len(g) for g in groups),
      "conflicting_groups": conflicts,
      "first_groups": listed,
  }
  if groups and not apply:
    card["note"] = "Beam build: splits assigned by path before validation; duplicates only reported"
  return verdicts, split_key, card


def _write_manifest(path: str, not_kept: list, dropped: list, ignored_folders=(), missing=()) -> None:
  """Every file not stored as is: skipped, ignored, transcoded, repaired, balanced out;
  every folder never read (junk such as `__MACOSX/`, folders outside `class_names`,
  symlink loops), with its reason; every name a label file gives without a file (status
  "missing")."""
  rows = [
      {"path": folder, "status": "ignored", "reason": reason, "size_bytes": 0, "sha256": ""}
      for folder, reason in ignored_folders
  ]
  rows += [
      {
          "path": v.path,
          "status": v.status,
          "reason": v.reason,
          "size_bytes": v.size_bytes,
          "sha256": v.sha256,
      }
      for v in not_kept
  ]
  rows += [
      {"path": name, "status": "missing", "reason": "named in the labels file, no such file",
       "size_bytes": 0, "sha256": ""}
      for name in missing
  ]
  rows += [
      {
          "path": v.path,
          "status": "balanced_out",
          "reason": "undersampled to the smallest class",
          "size_bytes": v.size_bytes,
          "sha256": v.sha256,
      }
      for v in dropped
  ]
  rows.sort(key=lambda r: (r["status"], r["path"]))
  _write_jsonl(path, rows)


def _write_jsonl(path: str, rows: list[dict]) -> None:
  """One JSON object a line; the file exists even with no rows (GFile creates it on write)."""
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_manifest(dataset_dir: str) -> list[dict]:
  """The manifest rows of a built dataset folder."""
  with tf.io.gfile.GFile(os.path.join(dataset_dir, MANIFEST)) as f:
    return [json.loads(line) for line in f if line.strip()]
