"""The same build on Apache Beam: validation, balancing and encoding run on workers.

Selected by `tfds build ... --beam_pipeline_options=...`. Every decision uses
the functions of the local build (split by path hash, balance by salted path
hash, the same validation and encoding), so both produce the same records.
Verdicts are written as JSON lines so the driver can write the same manifest
and card afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

import tensorflow as tf
from petpipe.builders import splits as splits_lib
from petpipe.builders.tfds_compat import beam
from petpipe.images import validate_files
from petpipe.images import validation

VERDICTS_DIR = "beam_verdicts"


def _verdict_to_json(v: validation.Verdict) -> str:
  return json.dumps(dataclasses.asdict(v), ensure_ascii=False)


def read_verdicts(data_dir: str) -> list[validation.Verdict]:
  """All verdicts the workers wrote, in path order; removes their files."""
  folder = os.path.join(data_dir, VERDICTS_DIR)
  rows = []
  for path in sorted(tf.io.gfile.glob(os.path.join(folder, "*"))):
    with tf.io.gfile.GFile(path) as f:
      rows += [validation.Verdict(**json.loads(line)) for line in f if line.strip()]
  tf.io.gfile.rmtree(folder)
  return sorted(rows, key=lambda v: v.path)


def _labelled(v: validation.Verdict, label_of_dir: dict, label_index: dict):
  return label_index[label_of_dir[v.class_dir]], v


def _keep_balanced(group, counts: dict, labels: Sequence[int], present_only: bool = False):
  """The same choice as `splits.balance`: the smallest salted path hashes. `present_only`:
  among the classes this split has (given splits may lack a class)."""
  label, verdicts = group
  target = min(counts.values()) if present_only else min(counts.get(l, 0) for l in labels)
  ranked = sorted(verdicts, key=lambda v: (splits_lib.stable_fraction(v.path, "balance"), v.path))
  for v in ranked[:target]:
    yield label, v


def _swap(labelled):
  label, v = labelled
  return v, label


@beam.ptransform_fn
def split_examples(
    root,
    candidates: Sequence,
    source,
    limits: validation.Limits,
    label_of_dir: dict,
    label_index: dict,
    balance: bool,
    make_example: Callable,
    verdict_prefix: str,
    balance_present_only: bool = False,
):
  """PTransform: candidates of one split → (key, example) pairs."""
  verdicts = (
      root
      | "Candidates" >> beam.Create(list(candidates))
      | "Reshuffle" >> beam.Reshuffle()
      | "Validate" >> beam.Map(validate_files.check_alone, source=source, limits=limits)
  )
  _ = (
      verdicts
      | "VerdictJson" >> beam.Map(_verdict_to_json)
      | "WriteVerdicts" >> beam.io.WriteToText(verdict_prefix)
  )
  usable = (
      verdicts
      | "Usable" >> beam.Filter(lambda v: v.usable)
      | "Label" >> beam.Map(_labelled, label_of_dir=label_of_dir, label_index=label_index)
  )
  if balance:
    counts = usable | "CountPerClass" >> beam.combiners.Count.PerKey()
    usable = (
        usable
        | "GroupByClass" >> beam.GroupByKey()
        | "KeepBalanced" >> beam.FlatMap(
            _keep_balanced, counts=beam.pvalue.AsDict(counts), labels=sorted(set(label_index.values())),
            present_only=balance_present_only,
        )
    )
  return usable | "Swap" >> beam.Map(_swap) | "Encode" >> beam.Map(_checked_example, make_example=make_example)


def _checked_example(item, make_example: Callable):
  """On Beam a file changed since validation fails the build, naming it (never stored unchecked)."""
  result = make_example(item)
  if result is None:
    raise ValueError(f"{item[0].path} changed during the build: its bytes differ from those validated")
  return result
