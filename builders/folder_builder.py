"""The shared TFDS builder: validate → split → balance → record the card → write.

`image_folder` and `pet_images` subclass `FolderBuilder`; they only say where
the files are and what the classes are called.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import pathlib
from typing import Iterable

import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.builders import card as card_lib
from petpipe.builders import local_plan
from petpipe.builders import pixel_spill
from petpipe.builders import quality
from petpipe.builders import sorted_jsonl
from petpipe.builders import stable_records
from petpipe.builders import tfds_compat
from petpipe.builders import storage as storage_lib
from petpipe.builders import verdict_store
from petpipe.builders.folder_config import FolderConfig, storage_configs  # noqa: F401  (re-exported)
from petpipe.images import filesystems
from petpipe.images import validate_files
from petpipe.images import validation
from petpipe.pipeline import dataset_files
from petpipe.pipeline import folder_lock
from petpipe.pipeline import schema

MANIFEST = local_plan.MANIFEST
FILES = local_plan.FILES
CHANGED = "changed_during_build"
_WINDOW = 64  # examples encoded ahead of the writer: bounds memory
_SHUFFLE_MEMORY = 16 << 20  # records TFDS's writer holds before spilling them to disk


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
    if self._on_beam:  # the engine lists the files: the driver never holds them
      return self._beam_split_generators(source, label_of_dir, label)
    listing = source.listing()
    quality.check_classes(self.builder_config, source, names, label_of_dir, listing)
    if not any(c.is_image for c in listing.candidates):
      raise ValueError(f"No image files found in {source}.")
    plan = local_plan.LocalPlan(self._validated(source, listing.candidates), listing.candidates,
                                source, label_of_dir, names, self.builder_config)
    plan.resolve_duplicates()
    self._manifest = sorted_jsonl.SortedJsonl(os.path.join(self.data_dir, MANIFEST),
                                              local_plan.manifest_key)
    for row in local_plan.folder_rows(listing.ignored_folders,
                                      getattr(source, "missing_files", list)()):
      self._manifest.add(row)
    before, after = plan.plan(self._manifest)
    self.info.metadata["card"] = plan.card(before, after, listing.ignored_folders)
    self.info.metadata["card"]["verdicts_reused"] = self._reused
    self._plan = plan
    self._files = sorted_jsonl.SortedJsonl(os.path.join(self.data_dir, FILES), local_plan.files_key)
    self._changed = []  # (split, verdict, label): bytes differ from the validated ones
    return {split: self._generate_examples(source, plan.items(split), split)
            for split in plan.split_names()}

  def _validated(self, source, candidates) -> str:
    """Writes every candidate's verdict to `verdicts.jsonl` (returns its path): reused from a
    previous build for files whose stamp is unchanged (`verdict_store`), validated here for
    the rest, a chunk at a time. A raw build validates by the one transform at the stored
    size and keeps those pixels for the writer (`pixel_spill`): one decode a file."""
    config = self.builder_config
    limits = config.limits
    key = verdict_store.key(source, limits)
    config_dir = os.path.dirname(self.data_path)
    reuse = verdict_store.Reuse(
        verdict_store.previous(os.path.dirname(config_dir), key, config.reuse), config.reuse_check)
    preprocessing = storage_lib.raw_preprocessing(config.storage)
    self._spill = None
    if preprocessing is not None and not limits.near_duplicates:
      # On the output's disk when it is local (a tmpfs /tmp would hold it in RAM).
      folder = self.data_dir if filesystems.is_local(self.data_dir) else None
      self._spill = pixel_spill.PixelSpill(
          (*preprocessing.image_size, preprocessing.channels), len(candidates), folder)
    made = {}  # id(verdict) -> its pixels, from validation to the verdict's ordinal

    def validate(todo):
      for v, pixels in validate_files.iter_validated_pixels(
          source, todo, limits, preprocessing, progress=tfds_compat.progress_bars_enabled()):
        if pixels is not None and self._spill is not None:
          made[id(v)] = pixels
        yield v

    stamped = reuse.stamped(source, candidates, validate)
    for ordinal, v in enumerate(verdict_store.write(self.data_dir, key, stamped)):
      pixels = made.pop(id(v), None)
      if pixels is not None:
        self._spill.add(ordinal, pixels)
    tf.io.gfile.makedirs(config_dir)
    verdict_store.keep(self.data_dir, config_dir)
    self._reused = reuse.reused
    return verdict_store.path(self.data_dir)

  def _beam_split_generators(self, source, label_of_dir, label):
    # Imported here: it imports apache_beam, which only Beam builds need.
    from petpipe.builders import beam_build

    quality.check_classes(self.builder_config, source, self._label_names(), label_of_dir, None)
    plan = beam_build.Plan(source, self._label_names(), label_of_dir, self.builder_config,
                           self._example_fn(source), self.data_dir,
                           getattr(source, "missing_files", list)())
    self.beam_plan = plan  # its graph_bytes: the plan pipeline's size, for benchmarks
    self.info.metadata["card"] = plan.run(*self._beam_run)
    after = self.info.metadata["card"]["counts_after_balancing"]
    return {split: beam_build.split_examples(plan, split)
            for split, counts in after.items() if any(counts.values())}

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

  def _generate_examples(self, source, items: Iterable[tuple[int, validation.Verdict, int]],
                         split: str = ""):
    config = self.builder_config
    make = self._example_fn(source)
    workers = validate_files.usable_cores()

    def checked(item, result):
      # A file whose bytes now differ from the validated ones is not stored (recorded instead).
      if result is None:
        self._changed.append((split, *item))
        return None
      v, label = item
      self._files.add({"path": v.path, "split": split, "label": label, "size_bytes": v.size_bytes,
                       "sha256": v.sha256})
      return result

    # TFDS orders records by key hash, so the order examples are yielded in is free: files
    # stored as is and pixels validation made go straight through, the rest are encoded in
    # threads.
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      pending = collections.deque()
      spill = getattr(self, "_spill", None)

      def ready():
        item, future = pending.popleft()
        return checked(item, future.result())

      for ordinal, verdict, label in items:
        item = (verdict, label)
        pixels = spill.get(ordinal) if spill is not None else None
        if pixels is not None:  # made from the validated bytes: nothing to read again
          yield checked(item, _record(verdict, label, pixels))
          continue
        if storage_lib.stored_as_is(verdict, config.storage, config.max_side):
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
    self._files.close()
    names = self._label_names()
    card = self.info.metadata["card"]
    for split, v, label in self._changed:
      reason = f"{CHANGED}: the file's bytes differ from those validated"
      self._manifest.add(local_plan.manifest_row(v, validation.SKIPPED, reason))
      card["counts_after_balancing"][split][names[label]] -= 1
      self._plan.tally.moved(v, validation.SKIPPED, reason)
    if self._changed:
      tally = self._plan.tally
      card["status"] = dict(sorted((+tally.status).items()))
      card["skipped_by_reason"] = dict(sorted(
          (k, c) for k, c in tally.reasons[validation.SKIPPED].items() if c))
    self._manifest.close()

  def _example_writer(self):
    # Sorted map entries in every record (local and Beam), for this builder only.
    return stable_records.StableExampleWriter(file_format=self.info.file_format)

  def _download_and_prepare(self, dl_manager, download_config=None):
    self._on_beam = bool(download_config and (download_config.beam_runner or download_config.beam_options))
    if self._on_beam:
      self._beam_run = (download_config.beam_runner, download_config.beam_options)
    with tfds_compat.shuffle_memory(_SHUFFLE_MEMORY):
      result = super()._download_and_prepare(dl_manager, download_config)
    if self._on_beam:
      self.beam_plan.clean_up()
    else:
      self._record_written()
      if getattr(self, "_spill", None) is not None:
        self._spill.close()
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
  return _record(verdict, label, image)


def _record(verdict: validation.Verdict, label: int, image) -> tuple[str, dict]:
  """(key, example) of one stored file."""
  return verdict.path, {schema.IMAGE: image, schema.LABEL: label, schema.FILENAME: verdict.path}


def read_manifest(dataset_dir: str) -> list[dict]:
  """The manifest rows of a built dataset folder (written as one file, or in parts by Beam)."""
  return list(dataset_files.rows(dataset_dir, MANIFEST))
