"""Validating many files: every core reads, hashes and decodes, and each libjpeg warning
finds its file.

Per-file Python work holds the GIL, so threads that each run a whole file's check stay near
one core's worth of files however many cores there are. Here each step runs where it
scales: `workers` threads read, hash and parse the headers of a chunk of files
(`validation.prepare`: the reads and the sha256 release the GIL, the header is ~10 us of
Python), while TensorFlow decodes the previous chunk's files in one tf.data map per decoder
on `workers` threads (`validation.decode_check`, C++, off the GIL); the rest of each verdict
is Python again (`validation.after_decode`). A file whose decode fails in the map is decoded
again alone, for its reason. The verdicts are those of `validation.check`, file by file.
For a raw build the map decodes by the one transform at the stored size instead, and the
pixels come along (`iter_validated_pixels`): the build's only decode of the file.

libjpeg prints its warnings to file descriptor 2: it is captured per chunk (`quiet`), and in
a chunk that warned, JPEGs are decoded again, `workers` at a time, until every warning has
found its file (`_rechecked`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import threading
import time
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm import auto as tqdm

from petpipe.images import decode
from petpipe.images import gil_clock
from petpipe.images import pixels as pixels_lib
from petpipe.images import quiet
from petpipe.images import sources as sources_lib
from petpipe.images import transform
from petpipe.images import validation

# A chunk's files and bytes at most (a chunk may pass the bytes by `workers` files): two
# chunks are in memory at once. Each chunk costs ~6 ms of tf.data set-up, and a chunk in
# which libjpeg warned has JPEGs decoded again until each warning has its file.
CHUNK_FILES = 256
CHUNK_BYTES = 32 << 20
# The decoders the map runs (PILLOW files are read by Pillow, in Python).
_GRAPH_DECODERS = (decode.JPEG, decode.IMAGE, decode.WEBP)


@dataclasses.dataclass
class Stats:
  """Where a validation's time went (filled in by `validate`).

  Attributes:
    files: files validated.
    python_seconds: CPU seconds of per-file Python that holds the GIL (listing a file's
      verdict, parsing headers, handing chunks to TensorFlow; not the reads and hashing,
      which release it): what bounds files/s however many cores decode.
    seconds: wall seconds in all.
    startup_seconds: CPU seconds of this thread tracing and first running each decoder's
      tf.data function: once a process, whatever the number of files (not in
      `python_seconds`).
  """

  files: int = 0
  python_seconds: float = 0.0
  seconds: float = 0.0
  startup_seconds: float = 0.0
  _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

  def add_python(self, seconds: float) -> None:
    with self._lock:
      self.python_seconds += seconds

  @property
  def python_us_per_file(self) -> float:
    return self.python_seconds / max(self.files, 1) * 1e6


def usable_cores() -> int:
  """CPUs this process may run on (its affinity, as `taskset` or a container sets it)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def validate(
    source,
    candidates: Sequence[sources_lib.Candidate],
    limits: validation.Limits = validation.Limits(),
    workers: Optional[int] = None,
    progress: bool = True,
    stats: Optional[Stats] = None,
) -> list[validation.Verdict]:
  """Every candidate's verdict, in order, on `workers` threads (default: one a usable core)."""
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
  for verdict, _ in iter_validated_pixels(source, candidates, limits, None, workers, progress,
                                          stats):
    yield verdict


def iter_validated_pixels(
    source,
    candidates: Sequence[sources_lib.Candidate],
    limits: validation.Limits = validation.Limits(),
    preprocessing: Optional[transform.Preprocessing] = None,
    workers: Optional[int] = None,
    progress: bool = True,
    stats: Optional[Stats] = None,
) -> Iterator[tuple[validation.Verdict, Optional[np.ndarray]]]:
  """(verdict, pixels) of every candidate, in order: with `preprocessing`, the file is
  decoded once, by the one transform (`transform.transform_file`, rounded to uint8), and
  validated from that decode; its pixels come along (None for a file decoded otherwise:
  one not usable, one Pillow reads, one whose map decode failed, or with `near_duplicates`,
  whose perceptual hash takes the validation's own decode). The verdicts are those of
  `validate`."""
  workers = workers or usable_cores()
  stats = stats if stats is not None else Stats()
  start = time.perf_counter()
  remaining = _Shared(iter(candidates))
  if limits.near_duplicates:
    preprocessing = None
  bar_out = os.fdopen(os.dup(2), "w")  # the bar must not land in the capture
  with contextlib.closing(bar_out), concurrent.futures.ThreadPoolExecutor(1) as ahead_pool, \
      concurrent.futures.ThreadPoolExecutor(workers) as readers, \
      concurrent.futures.ThreadPoolExecutor(workers) as checkers, \
      tqdm.tqdm(total=len(candidates), desc="Validating images", unit=" files", file=bar_out,
                disable=not progress) as bar:
    prepare = functools.partial(_prepare_chunk, source, remaining, limits, readers, workers, stats)
    ahead = ahead_pool.submit(prepare)
    while chunk := ahead.result():
      ahead = ahead_pool.submit(prepare)  # read while this chunk decodes
      decided = _decide_chunk(chunk, limits, workers, stats, checkers, preprocessing)
      bar.update(len(decided))
      yield from decided
  stats.files += len(candidates)
  stats.seconds += time.perf_counter() - start


class _Shared:
  """The candidates, numbered, handed out to reader threads one at a time."""

  def __init__(self, candidates: Iterator):
    self._items = enumerate(candidates)
    self.lock = threading.Lock()

  def take(self):
    """The next (ordinal, candidate), or None at the end; call under `lock`."""
    return next(self._items, None)


def _prepare_chunk(source, remaining: _Shared, limits, readers, workers: int,
                   stats: Stats) -> list:
  """The next chunk's prepared candidates (verdicts, or pending decodes) in order, read on
  `workers` threads and bounded in files and bytes; [] when none are left."""
  found: dict = {}
  size = [0]

  def read():
    python = 0.0
    while True:
      with remaining.lock:
        if len(found) >= CHUNK_FILES or size[0] >= CHUNK_BYTES:
          break
        item = remaining.take()
        if item is None:
          break
        found[item[0]] = None  # claimed: counts towards the chunk
      start, released = time.thread_time(), gil_clock.released_seconds()
      prepared = validation.prepare(source, item[1], limits)
      python += (time.thread_time() - start) - (gil_clock.released_seconds() - released)
      with remaining.lock:
        found[item[0]] = prepared
        size[0] += len(prepared.data) if isinstance(prepared, validation.Pending) else 0
    stats.add_python(python)

  for future in [readers.submit(read) for _ in range(workers)]:
    future.result()
  return [found[i] for i in sorted(found)]


def _decide_chunk(chunk: list, limits, workers: int, stats: Stats,
                  checkers: concurrent.futures.Executor,
                  preprocessing: Optional[transform.Preprocessing] = None) -> list:
  """(verdict, pixels) of a prepared chunk: its pending files decoded in one parallel map a
  decoder (by `preprocessing`, when given); `checkers` (`workers` threads) find the files
  behind any warning libjpeg printed."""
  start, released = time.thread_time(), gil_clock.released_seconds()
  pending = [(i, p) for i, p in enumerate(chunk)
             if isinstance(p, validation.Pending) and p.decoder in _GRAPH_DECODERS]
  verdicts, pixels = list(chunk), [None] * len(chunk)
  decoded = {}
  with quiet.decoding() as captured:
    for decoder in _GRAPH_DECODERS:
      group = [(i, p) for i, p in pending if p.decoder == decoder]
      if not group:
        continue
      _warm_up(decoder, workers, preprocessing, limits.near_duplicates, stats)
      data = [p.data for _, p in group]
      if preprocessing is not None:
        found = _pixels_in_parallel(data, decoder, workers, preprocessing)
      else:
        found = _decode_in_parallel(data, decoder, workers, limits.near_duplicates)
      decoded.update((group[k][0], image) for k, image in found.items())
    map_warnings, _ = quiet.split_warnings(captured.new_text())
    for i, p in pending:
      if i not in decoded:
        verdicts[i] = validation.decided(p, limits)  # alone again: its decode's own error
      elif preprocessing is None:
        verdicts[i] = validation.after_decode(p, limits, decoded[i])
      else:
        verdicts[i] = validation.after_decode(p, limits)
        pixels[i] = decoded[i] if verdicts[i].usable else None
    for i, p in enumerate(chunk):
      if isinstance(p, validation.Pending) and p.decoder not in _GRAPH_DECODERS:
        verdicts[i] = validation.decided(p, limits)  # Pillow's
  if map_warnings:
    verdicts = _rechecked(verdicts, chunk, map_warnings, checkers, workers)
  # This thread's CPU: Python, and handing the chunk to TensorFlow (the decodes run on
  # TensorFlow's threads, not this one's).
  stats.add_python(time.thread_time() - start - (gil_clock.released_seconds() - released))
  return list(zip(verdicts, pixels))


_WARM = set()


def _warm_up(decoder: str, workers: int, preprocessing, keep_images: bool, stats: Stats) -> None:
  """Traces and first runs a decoder's function on no files, its CPU time counted as start-up
  (`Stats.startup_seconds`) and not as per-file Python."""
  key = (decoder, workers, preprocessing, keep_images)
  if key in _WARM:
    return
  start, released = time.thread_time(), gil_clock.released_seconds()
  if preprocessing is not None:
    _decoded_pixels(decoder, workers, preprocessing)(tf.constant([], tf.string))
  elif not keep_images:
    _decoded_indices(decoder, workers)(tf.constant([], tf.string))
  _WARM.add(key)
  spent = time.thread_time() - start - (gil_clock.released_seconds() - released)
  stats.add_python(-spent)  # inside the caller's clock: moved to start-up
  stats.startup_seconds += spent


def _decode_in_parallel(data: list, decoder: str, workers: int, keep_images: bool) -> dict:
  """{index into `data`: its decoded image (None unless `keep_images`)} of the files
  TensorFlow decodes with `decoder`; the others failed."""
  if not data:
    return {}
  if not keep_images:
    decoded = _decoded_indices(decoder, workers)(tf.constant(data))
    return dict.fromkeys(decoded.numpy().tolist())
  ds = _decoding(tf.constant(data), decoder, workers, keep_images=True)
  return {int(index): image.numpy() for index, image in ds}


def _pixels_in_parallel(data: list, decoder: str, workers: int,
                        preprocessing: transform.Preprocessing) -> dict:
  """{index into `data`: its uint8 pixels by `preprocessing`} of the files that decode."""
  if not data:
    return {}
  indices, images = _decoded_pixels(decoder, workers, preprocessing)(tf.constant(data))
  return dict(zip(indices.numpy().tolist(), images.numpy()))


def _decoding(data: tf.Tensor, decoder: str, workers: int, keep_images: bool,
              preprocessing: Optional[transform.Preprocessing] = None) -> tf.data.Dataset:
  """(index, and with `keep_images` the image) of each of `data` that decodes, any order."""
  ds = tf.data.Dataset.from_tensor_slices((tf.range(tf.size(data)), data))
  ds = ds.map(_graph_check(decoder, keep_images, preprocessing), num_parallel_calls=workers,
              deterministic=False)
  ds = ds.ignore_errors()  # a failing file drops out: decoded again alone for its reason
  options = tf.data.Options()
  options.threading.private_threadpool_size = workers
  options.threading.max_intra_op_parallelism = 1
  # Rewriting this small pipeline's graph cost more than it saves (~8 ms each chunk).
  options.experimental_optimization.apply_default_optimizations = False
  return ds.with_options(options)


@functools.lru_cache(maxsize=None)
def _decoded_indices(decoder: str, workers: int):
  """bytes [n] -> int32 indices of those that decode: the whole tf.data pipeline in one
  function traced once, where a dataset built for each chunk cost ~20 ms of tracing."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def decoded_indices(data):
    ds = _decoding(data, decoder, workers, keep_images=False).batch(CHUNK_FILES)
    return ds.reduce(tf.zeros([0], tf.int32),
                     lambda found, batch: tf.concat([found, batch[:, 0]], 0))

  return decoded_indices


@functools.lru_cache(maxsize=None)
def _decoded_pixels(decoder: str, workers: int, preprocessing: transform.Preprocessing):
  """bytes [n] -> (int32 indices, uint8 pixels [k, H, W, C]) of those that decode."""
  height, width = preprocessing.image_size
  channels = preprocessing.channels

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
  def decoded_pixels(data):
    ds = _decoding(data, decoder, workers, True, preprocessing).batch(CHUNK_FILES)
    return ds.reduce(
        (tf.zeros([0], tf.int32), tf.zeros([0, height, width, channels], tf.uint8)),
        lambda found, batch: (tf.concat([found[0], batch[0]], 0),
                              tf.concat([found[1], batch[1]], 0)))

  return decoded_pixels


@functools.lru_cache(maxsize=None)
def _graph_check(decoder: str, keep_images: bool,
                 preprocessing: Optional[transform.Preprocessing] = None):
  """(index, bytes) -> index (and the decoded image), for one decoder: traced once. With
  `preprocessing`, the image is the one transform's uint8 pixels (what raw records store)."""
  signature = [tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.string)]

  @tf.function(input_signature=signature, autograph=False)
  def check(index, data):
    if preprocessing is not None:
      return index, pixels_lib.to_uint8(transform.transform_file(data, preprocessing, decoder))
    image = validation.decode_check(data, decoder)
    if keep_images:
      return index, image
    # The decode's own height beside the index: a decode whose output nothing uses is
    # pruned from the graph (a control dependency alone does not stop it).
    return tf.stack([index, tf.shape(image, out_type=tf.int32)[0]])

  return check


def _rechecked(verdicts: list, chunk: list, map_warnings: list[str],
               checkers: concurrent.futures.Executor, workers: int) -> list:
  """The verdicts of a chunk whose map printed `map_warnings`: its JPEGs decoded again,
  `workers` at a time on `checkers`, a group that warns split until each warning has its
  file, a clean JPEG (KEPT) that warned marked REPAIRED.

  libjpeg prints the same warnings for the same bytes, so the search stops once every
  warning of the map is found: the JPEGs whose verdict a warning cannot change are decoded
  first, then the clean ones until none is left to find (about half of them on average,
  instead of all). Should a file warn other than in the map (another decode, another
  scale), every JPEG is decoded again, as a search without the stop would."""
  out = list(verdicts)
  jpegs = [i for i, p in enumerate(chunk)
           if isinstance(p, validation.Pending) and p.decoder == decode.JPEG]
  jpegs.sort(key=lambda i: verdicts[i].status == validation.KEPT)  # stable: KEPT last
  to_find = collections.Counter(map_warnings)
  exact = True
  with quiet.decoding() as captured:

    def warnings_of(group: list[int]) -> list[str]:
      if len(group) == 1:
        _recheck_decode(chunk[group[0]].data)
      else:
        list(checkers.map(lambda i: _recheck_decode(chunk[i].data), group))
      return quiet.split_warnings(captured.new_text())[0]

    def attribute(group: list[int], warnings: list[str]) -> None:
      if all(verdicts[i].status != validation.KEPT for i in group):
        return  # only a clean JPEG's verdict changes
      if len(group) == 1:
        out[group[0]] = mark_if_warned(verdicts[group[0]], "\n".join(warnings))
        return
      half = len(group) // 2
      for part in (group[:half], group[half:]):
        found = warnings_of(part)
        if found:
          attribute(part, found)

    for start in range(0, len(jpegs), workers):
      if exact and not +to_find:
        break
      group = jpegs[start:start + workers]
      warnings = warnings_of(group)
      if warnings:
        exact = exact and not collections.Counter(warnings) - to_find
        to_find -= collections.Counter(warnings)
        attribute(group, warnings)
  return out


def _recheck_decode(data: bytes) -> None:
  """One file's decode as validation's (its warnings are what counts), on this thread."""
  start = time.thread_time()
  try:
    validation.decode_check(data, decode.JPEG)  # the eager kernel releases the GIL
  except tf.errors.OpError:
    pass  # a file that fails was decided already; its warnings still count
  gil_clock.add_released(time.thread_time() - start)


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
