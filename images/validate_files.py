"""Validating many files: every core decodes, and each libjpeg warning finds its file.

Per-file Python work holds the GIL, so threads that each validate a file stay near one
core's worth of files however many cores there are. Here the work is split by what holds
the GIL: one thread reads, hashes and reads the header of a chunk of files
(`validation.prepare`, Python, ~50 us a file), while TensorFlow decodes the previous chunk's
files in one tf.data map on `workers` threads (`validation.decode_check`, C++, off the GIL),
and the rest of each verdict is Python again (`validation.after_decode`). A file whose
decode fails in the map is decoded again alone, for its reason. The verdicts are those of
`validation.check`, file by file.

libjpeg prints its warnings to file descriptor 2: it is captured per chunk (`quiet`), and a
chunk that warned has its clean JPEGs decoded again one at a time to find which one did.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import time
from typing import Iterator, Optional, Sequence

import tensorflow as tf
from tqdm import auto as tqdm

from petpipe.images import decode
from petpipe.images import quiet
from petpipe.images import sources as sources_lib
from petpipe.images import validation

# A chunk's files and bytes at most: two chunks are in memory at once.
CHUNK_FILES = 256
CHUNK_BYTES = 32 << 20
# The decoders the map runs, by code (PILLOW files are read by Pillow, in Python).
_GRAPH_DECODERS = (decode.JPEG, decode.IMAGE, decode.WEBP)


@dataclasses.dataclass
class Stats:
  """Where a validation's time went (filled in by `validate`).

  Attributes:
    files: files validated.
    python_seconds: seconds of per-file Python (reading, hashing, headers, verdicts): what
      holds the GIL, so what bounds files/s however many cores decode.
    seconds: wall seconds in all.
  """

  files: int = 0
  python_seconds: float = 0.0
  seconds: float = 0.0

  @property
  def python_us_per_file(self) -> float:
    return self.python_seconds / max(self.files, 1) * 1e6


def validate(
    source,
    candidates: Sequence[sources_lib.Candidate],
    limits: validation.Limits = validation.Limits(),
    workers: Optional[int] = None,
    progress: bool = True,
    stats: Optional[Stats] = None,
) -> list[validation.Verdict]:
  """Every candidate's verdict, in order, decoded on `workers` threads (default: one a core)."""
  return list(iter_validated(source, candidates, limits, workers, progress, stats))


def iter_validated(
    source,
    candidates: Sequence[sources_lib.Candidate],
    limits: validation.Limits = validation.Limits(),
    workers: Optional[int] = None,
    progress: bool = True,
    stats: Optional[Stats] = None,
) -> Iterator[validation.Verdict]:
  """`validate`, one chunk of verdicts at a time (the candidates' order)."""
  workers = workers or os.cpu_count() or 1
  stats = stats if stats is not None else Stats()
  start = time.perf_counter()
  remaining = iter(candidates)
  bar_out = os.fdopen(os.dup(2), "w")  # the bar must not land in the capture
  with contextlib.closing(bar_out), concurrent.futures.ThreadPoolExecutor(1) as reader, \
      tqdm.tqdm(total=len(candidates), desc="Validating images", unit=" files", file=bar_out,
                disable=not progress) as bar:
    ahead = reader.submit(_prepare_chunk, source, remaining, limits, stats)
    while chunk := ahead.result():
      ahead = reader.submit(_prepare_chunk, source, remaining, limits, stats)  # while decoding
      verdicts = _decide_chunk(chunk, limits, workers, stats)
      bar.update(len(verdicts))
      yield from verdicts
  stats.files += len(candidates)
  stats.seconds += time.perf_counter() - start


def _prepare_chunk(source, remaining: Iterator, limits, stats: Stats) -> list:
  """The next chunk's prepared candidates (verdicts, or pending decodes), bounded in files
  and bytes; [] when none are left."""
  chunk, size = [], 0
  start = time.perf_counter()
  for cand in remaining:
    found = validation.prepare(source, cand, limits)
    chunk.append(found)
    size += len(found.data) if isinstance(found, validation.Pending) else 0
    if len(chunk) >= CHUNK_FILES or size >= CHUNK_BYTES:
      break
  stats.python_seconds += time.perf_counter() - start
  return chunk


def _decide_chunk(chunk: list, limits, workers: int, stats: Stats) -> list:
  """Verdicts of a prepared chunk: its pending files decoded in one parallel map."""
  pending = [(i, p) for i, p in enumerate(chunk)
             if isinstance(p, validation.Pending) and p.decoder in _GRAPH_DECODERS]
  with quiet.decoding() as captured:
    decoded = _decode_in_parallel([p for _, p in pending], workers, limits.near_duplicates)
    start = time.perf_counter()
    verdicts = list(chunk)
    for k, (i, p) in enumerate(pending):
      if k in decoded:
        verdicts[i] = validation.after_decode(p, limits, decoded[k])
      else:
        verdicts[i] = validation.decided(p, limits)  # alone again: its decode's own error
    for i, p in enumerate(chunk):
      if isinstance(p, validation.Pending) and p.decoder not in _GRAPH_DECODERS:
        verdicts[i] = validation.decided(p, limits)  # Pillow's
    stats.python_seconds += time.perf_counter() - start
  warned, _ = quiet.split_warnings(captured.text)
  if warned:
    verdicts = [_rechecked(v, p) if isinstance(p, validation.Pending) else v
                for v, p in zip(verdicts, chunk)]
  return verdicts


def _decode_in_parallel(pending: list, workers: int, keep_images: bool) -> dict:
  """{index into `pending`: its decoded image (None unless `keep_images`)} of the files
  TensorFlow decodes; the others failed."""
  if not pending:
    return {}
  codes = [_GRAPH_DECODERS.index(p.decoder) for p in pending]
  ds = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(pending)), tf.constant([p.data for p in pending]), tf.constant(codes)))
  ds = ds.map(_graph_check(keep_images), num_parallel_calls=workers, deterministic=False)
  ds = ds.ignore_errors()  # a failing file drops out: decoded again alone for its reason
  options = tf.data.Options()
  options.threading.private_threadpool_size = workers
  options.threading.max_intra_op_parallelism = 1
  ds = ds.with_options(options)
  if keep_images:
    return {int(index): image.numpy() for index, image in ds}
  return {int(index): None for batch in ds.batch(len(pending)) for index in batch.numpy()}


@functools.lru_cache(maxsize=2)
def _graph_check(keep_images: bool):
  """(index, bytes, decoder code) -> index (and the decoded image): traced once."""
  signature = [tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.string),
               tf.TensorSpec([], tf.int32)]

  @tf.function(input_signature=signature, autograph=False)
  def check(index, data, code):
    branches = [functools.partial(validation.decode_check, data, d) for d in _GRAPH_DECODERS]
    image = tf.switch_case(code, branches)
    # The index must depend on the decode: an unused decode is pruned from the graph.
    with tf.control_dependencies([image]):
      index = tf.identity(index)
    return (index, image) if keep_images else index

  return check


def _rechecked(v: validation.Verdict, pending: validation.Pending) -> validation.Verdict:
  """A clean JPEG of a chunk in which libjpeg warned, decoded alone to see if it was this one."""
  if v.status != validation.KEPT:
    return v
  with quiet.decoding() as captured:
    validation.decode_check(pending.data, decode.JPEG)
  return mark_if_warned(v, captured.text)


def mark_if_warned(v: validation.Verdict, text: str) -> validation.Verdict:
  warn, _ = quiet.split_warnings(text)
  if warn and v.status == validation.KEPT:
    return dataclasses.replace(v, status=validation.REPAIRED, reason=f"libjpeg warning: {warn[0]}")
  return v


def check_alone(cand: sources_lib.Candidate, source, limits: validation.Limits) -> validation.Verdict:
  """Validates one file with its libjpeg warnings attributed to it (Beam workers)."""
  with quiet.decoding() as captured:
    v = validation.check(source, cand, limits)
  return mark_if_warned(v, captured.text)
