"""The same build on Apache Beam, every step on workers: the driver holds no file list.

Selected by `tfds build ... --beam_pipeline_options=...`. Workers list the files (one part a
class folder, `listing_parts`), validate them, group exact duplicates by sha256 (so copies
share a split, as locally), count classes and balance them by a per-class threshold on the
salted path hash (no class is ever held in memory: a histogram of hash buckets finds the
edge bucket, and only that bucket's files are sorted), and write the manifest and
`files.jsonl` as sorted parts. The card is made of combiners' small results, which the
driver reads back (`read_card`). Every decision calls the functions the local build calls,
so both builds give the same records, manifest, `files.jsonl` and card.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
import pickle
from typing import Callable

import tensorflow as tf

from petpipe.builders import card as card_lib
from petpipe.builders import duplicates
from petpipe.builders import layouts
from petpipe.builders import local_plan
from petpipe.builders import quality
from petpipe.builders import sorted_jsonl
from petpipe.builders import splits as splits_lib
from petpipe.builders.tfds_compat import beam
from petpipe.images import validate_files
from petpipe.images import validation
from petpipe.pipeline import dataset_files

KEPT_DIR = "beam_kept"  # each split's files to store, between the plan and the writing
CARD_FILE = "beam_card.pickle"  # the card's pieces, for the driver; removed once read
ROWS_PER_PART = 200_000  # rows a worker sorts in memory for one part of a sorted file
_SAMPLE = 10_000  # rows sampled to place the parts' boundaries
BUCKET_BITS = 16  # balancing: hash buckets per class (only the edge bucket is sorted)
_IGNORED = "ignored_folders"
_GROUP = "duplicate_group"


class Plan:
  """The plan (listing → validation → duplicates → balance → manifest, `files.jsonl` and card)
  as a Beam pipeline of its own, run before the records are written (`run`): its card tells
  the driver which splits have files (TFDS refuses an empty split) and fails a build whose
  class has no usable file before anything is written, as locally. Each split's files to
  store are written as sharded JSON lines that `examples(split)` reads on workers."""

  def __init__(self, source, names, label_of_dir: dict, config, make_example: Callable,
               data_dir: str, missing: list, rows_per_part: int = ROWS_PER_PART,
               bucket_bits: int = BUCKET_BITS):
    self.source, self.names, self.label_of_dir, self.config = source, list(names), label_of_dir, config
    self.label_index = {n: i for i, n in enumerate(self.names)}
    self.make_example, self.data_dir, self.missing = make_example, data_dir, list(missing)
    self.given = bool(getattr(source, "split_folders", None))
    self.kept_dir = os.path.join(data_dir, KEPT_DIR)
    self.rows_per_part, self.bucket_bits = rows_per_part, bucket_bits
    self.graph_bytes = None

  def run(self, runner, options) -> dict:
    """Runs the plan on the runner and options of the build; returns the card."""
    p = beam.Pipeline(runner=runner, options=options)
    self._build(p)
    # What a runner's job graph holds: it must not grow with the number of files.
    self.graph_bytes = p.to_runner_api().ByteSize()
    p.run().wait_until_finish()
    return read_card(self.data_dir, self.names, self.config, self.source)

  def examples(self, root, split: str):
    """One split's (key, example) pairs, from its files to store."""
    return (root
            | "ReadKept" >> beam.io.ReadFromText(os.path.join(self.kept_dir, f"{split}-*"))
            | "Spread" >> beam.Reshuffle()
            | "Encode" >> beam.Map(_checked_example, make_example=self.make_example))

  def clean_up(self) -> None:
    if tf.io.gfile.exists(self.kept_dir):
      tf.io.gfile.rmtree(self.kept_dir)

  def _build(self, p):
    config = self.config
    listed = (
        p
        | "ListingParts" >> beam.Create(self.source.listing_parts())
        | "List" >> beam.ParDo(_List(), source=self.source).with_outputs(_IGNORED, main="files")
    )
    verdicts = (
        listed.files
        | "Spread" >> beam.Reshuffle()
        | "Validate" >> beam.Map(validate_files.check_alone, source=self.source, limits=config.limits)
    )
    # Only files that may be stored are grouped (shuffled); the rest go straight on.
    in_class = verdicts | "InClass" >> beam.Partition(
        lambda v, n: int(v.usable and v.class_dir in self.label_of_dir), 2)
    resolved = (
        in_class[1]
        | "DuplicateKey" >> beam.Map(_duplicate_key, near=bool(getattr(config, "near_duplicates", False)))
        | "GroupDuplicates" >> beam.GroupByKey()
        | "ResolveDuplicates" >> beam.ParDo(
            _Resolve(), label_of_dir=self.label_of_dir, mode=getattr(config, "duplicates", "keep"),
            split_folders=getattr(self.source, "split_folders", None),
            near=bool(getattr(config, "near_duplicates", False))).with_outputs(_GROUP, main="verdicts")
    )
    others = in_class[0] | "NotInClass" >> beam.Map(lambda v: (v, None))
    placed = (resolved.verdicts, others) | "AllVerdicts" >> beam.Flatten() | "Place" >> beam.Map(
        _place, source=self.source, percentages=config.percentages, label_of_dir=self.label_of_dir,
        label_index=self.label_index)
    final = placed | "Verdict" >> beam.Map(lambda t: t[0])
    usable = placed | "Usable" >> beam.Filter(lambda t: t[1] is not None)
    before = _counts(usable, "Before")
    if config.balance == "undersample":
      kept, dropped = self._balance(usable, before)
    else:
      kept, dropped = usable, p | "NoneDropped" >> beam.Create([])
    after = _counts(kept, "After")

    rows = (
        final | "NotKept" >> beam.Filter(lambda v: v.status != validation.KEPT)
        | "NotKeptRows" >> beam.Map(local_plan.manifest_row),
        dropped | "DroppedRows" >> beam.Map(lambda t: local_plan.manifest_row(t[0], *local_plan.BALANCED_OUT)),
        listed[_IGNORED] | "IgnoredRows" >> beam.FlatMap(lambda f: local_plan.folder_rows([f], [])),
        p | "MissingRows" >> beam.Create(list(local_plan.folder_rows([], self.missing))),
    ) | "ManifestRows" >> beam.Flatten()
    _write_sorted(rows, "Manifest", self.data_dir, local_plan.MANIFEST, local_plan.manifest_key,
                  self.rows_per_part)
    files = kept | "FileRows" >> beam.Map(_file_row)
    _write_sorted(files, "Files", self.data_dir, local_plan.FILES, local_plan.files_key,
                  self.rows_per_part)

    pieces = {
        "tally": final | "Tally" >> beam.CombineGlobally(_TallyFn()),
        "before": before | "BeforeList" >> beam.combiners.ToList(),
        "after": after | "AfterList" >> beam.combiners.ToList(),
        "duplicates": resolved[_GROUP] | "Duplicates" >> beam.CombineGlobally(_SummaryFn()),
        "ignored_folders": listed[_IGNORED] | "IgnoredList" >> beam.combiners.ToList(),
    }
    _ = (p | "CardOnce" >> beam.Create([None])
         | "WriteCard" >> beam.Map(_write_card, path=os.path.join(self.data_dir, CARD_FILE),
                                   **{k: beam.pvalue.AsSingleton(v) for k, v in pieces.items()}))
    by_split = kept | "BySplit" >> beam.Partition(
        lambda t, n: splits_lib.SPLITS.index(t[1]), len(splits_lib.SPLITS))
    for i, split in enumerate(splits_lib.SPLITS):
      _ = (by_split[i] | f"Kept{split}" >> beam.Map(_kept_line)
           | f"Write{split}" >> beam.io.WriteToText(os.path.join(self.kept_dir, split)))

  def _balance(self, usable, before):
    """(kept, balanced out): per split and class the `target` smallest (salted path hash, path),
    as the local build chooses."""
    counts = beam.pvalue.AsSingleton(before | "BalanceCounts" >> beam.combiners.ToList())
    bits = self.bucket_bits
    edges = (
        usable
        | "Bucket" >> beam.Map(lambda t, bits: ((t[1], t[2], _bucket(t[3], bits)), 1), bits=bits)
        | "BucketCounts" >> beam.CombinePerKey(sum)
        | "ByClass" >> beam.Map(lambda kv: ((kv[0][0], kv[0][1]), (kv[0][2], kv[1])))
        | "Histogram" >> beam.GroupByKey()
        | "EdgeBucket" >> beam.Map(_edge_bucket, counts=counts, present_only=self.given)
    )
    edge_of = beam.pvalue.AsDict(edges)
    thresholds = (
        usable
        | "OnTheEdge" >> beam.Filter(
            lambda t, e, bits: _bucket(t[3], bits) == e.get((t[1], t[2]), (None,))[0],
            e=edge_of, bits=bits)
        | "EdgeRanks" >> beam.Map(lambda t: ((t[1], t[2]), (t[3], t[0].path)))
        | "EdgeGroups" >> beam.GroupByKey()
        | "Threshold" >> beam.Map(_threshold, edges=edge_of)
    )
    decided = usable | "Balance" >> beam.Map(
        _decide, edges=edge_of, thresholds=beam.pvalue.AsDict(thresholds), bits=bits)
    tagged = decided | "KeptOrNot" >> beam.Partition(lambda t, n: int(t[4]), 2)
    return tagged[1] | "Kept" >> beam.Map(lambda t: t[:4]), tagged[0] | "Out" >> beam.Map(lambda t: t[:4])


@beam.ptransform_fn
def split_examples(root, plan: Plan, split: str):
  """PTransform: one split's (key, example) pairs."""
  return plan.examples(root, split)


def _kept_line(t) -> str:
  v, split, c, _ = t
  return json.dumps([dataclasses.asdict(v), c], ensure_ascii=False)


class _List(beam.DoFn):
  """One listing part → its candidates, and (tagged) the folders it does not read."""

  def process(self, part, source):
    listing = source.listing(part)
    yield from listing.candidates
    for folder in listing.ignored_folders:
      yield beam.pvalue.TaggedOutput(_IGNORED, tuple(folder))


def _duplicate_key(v: validation.Verdict, near: bool):
  """Files that may be duplicates share a key: the sha256 (near duplicates: one key for all
  usable files, so one worker compares their perceptual hashes, as the local build does)."""
  return ("" if near else v.sha256), v


class _Resolve(beam.DoFn):
  """One key's files → (verdict as kept, its group's first path or None); group entries tagged."""

  def process(self, element, label_of_dir, mode, split_folders, near):
    key, found = element
    found = sorted(found, key=lambda v: v.path)
    if len(found) < 2:
      for v in found:
        yield v, None
      return
    groups = splits_lib.duplicate_groups(found, lambda v: v.sha256, lambda v: v.path,
                                         (lambda v: v.phash) if near else None)
    grouped = set()
    for group in groups:
      out, entry = duplicates.resolve(group, label_of_dir, mode, split_folders)
      for v in out:
        grouped.add(v.path)
        yield v, group[0].path
      yield beam.pvalue.TaggedOutput(_GROUP, entry)
    for v in found:
      if v.path not in grouped:
        yield v, None


def _place(item, source, percentages, label_of_dir, label_index):
  """(verdict, split, class index, balance fraction); split None for files not stored."""
  v, key = item
  if not (v.usable and v.class_dir in label_of_dir):
    return v, None, None, None
  split = layouts.split_of_path(source, v.path, percentages, key)
  return v, split, label_index[label_of_dir[v.class_dir]], splits_lib.stable_fraction(v.path, "balance")


def _counts(placed, name: str):
  return (placed | f"{name}Key" >> beam.Map(lambda t: ((t[1], t[2]), 1))
          | f"{name}Count" >> beam.CombinePerKey(sum))


def _bucket(fraction: float, bits: int) -> int:
  return int(fraction * (1 << bits))


def _targets(counts: list, present_only: bool) -> dict:
  """{split: the count every class is cut to}, as the local build computes it."""
  per = {}
  for (split, c), n in counts:
    per.setdefault(split, {})[c] = n
  present = {c for (_, c), n in counts if n}
  out = {}
  for split, classes in per.items():
    among = [c for c in present if classes.get(c)] if present_only else present
    out[split] = min(classes.get(c, 0) for c in among)
  return out


def _edge_bucket(element, counts: list, present_only: bool):
  """((split, class), (edge bucket, files to keep in it)), or (None, 0) to keep every file."""
  (split, c), histogram = element
  target = _targets(counts, present_only)[split]
  if target >= sum(n for _, n in histogram):
    return (split, c), (None, 0)
  seen = 0
  for bucket, n in sorted(histogram):
    if seen + n > target:
      return (split, c), (bucket, target - seen)
    seen += n
  raise AssertionError("unreachable: the target is below the class's count")


def _threshold(element, edges: dict):
  """((split, class), the largest (fraction, path) kept in the edge bucket, or None)."""
  key, ranked = element
  need = edges[key][1]
  ranked = sorted(ranked)
  return key, ranked[need - 1] if need else None


def _decide(t, edges: dict, thresholds: dict, bits: int):
  v, split, c, fraction = t
  bucket, _ = edges.get((split, c), (None, 0))
  if bucket is None:
    return (*t, True)
  b = _bucket(fraction, bits)
  if b != bucket:
    return (*t, b < bucket)
  edge = thresholds.get((split, c))
  return (*t, edge is not None and (fraction, v.path) <= edge)


def _file_row(t) -> dict:
  v, split, c, _ = t
  return {"path": v.path, "split": split, "label": c, "size_bytes": v.size_bytes, "sha256": v.sha256}


def _checked_example(line: str, make_example: Callable):
  """On Beam a file changed since validation fails the build, naming it (never stored unchecked)."""
  verdict, c = json.loads(line)
  v = validation.Verdict(**verdict)
  result = make_example((v, c))
  if result is None:
    raise ValueError(f"{v.path} changed during the build: its bytes differ from those validated")
  return result


class _TallyFn(beam.CombineFn):

  def create_accumulator(self):
    return card_lib.Tally()

  def add_input(self, tally, v):
    return tally.add(v)

  def merge_accumulators(self, tallies):
    tallies = iter(tallies)
    first = next(tallies)
    for t in tallies:
      first.merge(t)
    return first

  def extract_output(self, tally):
    return tally


class _SummaryFn(_TallyFn):

  def create_accumulator(self):
    return duplicates.Summary()


def _write_card(_, path: str, **pieces) -> None:
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(pickle.dumps(pieces))


def read_card(data_dir: str, names, config, source) -> dict:
  """The card of the Beam build in `data_dir` (the pieces the workers counted; removed once
  read). Raises ValueError, as the local build does, when a class has no usable file."""
  path = os.path.join(data_dir, CARD_FILE)
  with tf.io.gfile.GFile(path, "rb") as f:
    pieces = pickle.loads(f.read())
  tf.io.gfile.remove(path)
  before = card_lib.counts_by_split(dict(pieces["before"]), names)
  after = card_lib.counts_by_split(dict(pieces["after"]), names)
  after = {split: after.get(split, {n: 0 for n in names}) for split in before}
  quality.check_plan(config, pieces["tally"], before, names)
  dup = pieces["duplicates"].card(getattr(config, "duplicates", "keep"),
                                  bool(getattr(config, "near_duplicates", False)),
                                  bool(getattr(source, "split_folders", None)))
  ignored = sorted(pieces["ignored_folders"])
  card = card_lib.build_card(pieces["tally"], before, after, ignored, dup, config, source)
  card["verdicts_reused"] = 0  # Beam builds validate every file
  return card


def _write_sorted(rows, name: str, data_dir: str, file_name: str, key: Callable,
                  rows_per_part: int) -> None:
  """Writes `rows` sorted by `key` as `file_name` (≤ `rows_per_part` rows) or in parts, each
  sorted by one worker, the parts' boundaries placed from a sample."""
  count = rows | f"{name}Count" >> beam.combiners.Count.Globally()
  bounds = (
      rows
      | f"{name}SampleKeys" >> beam.Map(key)
      | f"{name}Sample" >> beam.combiners.Sample.FixedSizeGlobally(_SAMPLE)
      | f"{name}Bounds" >> beam.Map(_bounds, count=beam.pvalue.AsSingleton(count),
                                    rows_per_part=rows_per_part)
  )
  _ = count | f"{name}IfEmpty" >> beam.Map(_write_if_empty, path=os.path.join(data_dir, file_name))
  _ = (
      rows
      | f"{name}ToPart" >> beam.Map(lambda r, b: (bisect.bisect_right(b, key(r)), r),
                                    b=beam.pvalue.AsSingleton(bounds))
      | f"{name}Parts" >> beam.GroupByKey()
      | f"{name}WritePart" >> beam.Map(_write_part, data_dir=data_dir, file_name=file_name, key=key,
                                       bounds=beam.pvalue.AsSingleton(bounds))
  )


def _bounds(sample: list, count: int, rows_per_part: int) -> list:
  parts = max(1, math.ceil(count / rows_per_part))
  sample = sorted(sample)
  return [sample[len(sample) * i // parts] for i in range(1, parts)]


def _write_if_empty(count: int, path: str) -> None:
  if not count:
    tf.io.gfile.GFile(path, "w").close()


def _write_part(element, data_dir: str, file_name: str, key: Callable, bounds: list) -> None:
  index, rows = element
  parts = len(bounds) + 1
  name = file_name if parts == 1 else dataset_files.part_name(file_name, index, parts)
  with tf.io.gfile.GFile(os.path.join(data_dir, name), "w") as f:
    f.write("".join(sorted_jsonl.line(r) for r in sorted(rows, key=key)))
