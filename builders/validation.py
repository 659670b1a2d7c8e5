"""Decode, don't sniff: every candidate is fully decoded with TensorFlow's decoder.

The header is read first (Pillow, no pixel data) so a bomb declaring 60000×60000
pixels costs nothing; then `tf.io.decode_image` — the decoder training uses —
decodes the whole file. libjpeg warnings ("Corrupt JPEG data: N extraneous
bytes") go to file descriptor 2, so they are captured there and attributed to
the file that caused them; such files are re-encoded once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import auto as tqdm

from petpipe.builders import sources as sources_lib
from petpipe.pipeline import image_headers

warnings.simplefilter("ignore", Image.DecompressionBombWarning)

KEPT = "kept"  # stored as is (a clean JPEG)
TRANSCODED = "transcoded"  # a good image in another format or colour space
REPAIRED = "repaired"  # decodes, but libjpeg warned: re-encoded once
SKIPPED = "skipped"  # not usable; the reason says why
IGNORED = "ignored"  # not an image file name (Thumbs.db, .DS_Store, ...)

USABLE = (KEPT, TRANSCODED, REPAIRED)
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")

# libjpeg's warning texts (jerror.h) as printed by its default message handler.
_LIBJPEG_WARNING = re.compile(
    r"^(Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|"
    r"Inconsistent progression sequence|Warning: |Unsupported marker|"
    r"Application transferred too few scanlines|Ignoring extra)"
)
_CHUNK = 64  # files decoded between two looks at the captured warnings


@dataclasses.dataclass(frozen=True)
class Limits:
  """What a usable image must satisfy.

  Attributes:
    max_pixels: largest width×height accepted, read from the header before any
      decoding (Pillow's own bomb limit by default).
    min_side: smallest width or height accepted.
    max_file_bytes: larger files (or zip members) are skipped before being
      read whole; they are hashed in chunks.
    near_duplicates: also compute each image's perceptual hash (`Verdict.phash`).
  """

  max_pixels: int = Image.MAX_IMAGE_PIXELS
  min_side: int = 8
  max_file_bytes: int = 64 * 2**20
  near_duplicates: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
  """What validation found for one file."""

  path: str
  class_dir: str
  status: str
  reason: str = ""
  format: str = ""
  width: int = 0
  height: int = 0
  size_bytes: int = 0
  sha256: str = ""
  phash: str = ""

  @property
  def usable(self) -> bool:
    return self.status in USABLE


def sha256_of(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _looks_like_text(data: bytes) -> bool:
  head = data[:512]
  return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _header_failure_reason(data: bytes, error: Exception) -> str:
  fmt = image_headers.sniff_format(data[:16])
  if fmt == "jpeg" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
    return "truncated: JPEG header incomplete"
  if fmt:
    return f"undecodable: {fmt.upper()} header unreadable ({type(error).__name__})"
  kind = "text or HTML, not an image" if _looks_like_text(data) else "unrecognised image data"
  return f"not_an_image: {kind} ({type(error).__name__})"


def _read_header(data: bytes) -> tuple[str, int, int, str]:
  with Image.open(io.BytesIO(data)) as im:
    return im.format or "", im.width, im.height, im.mode


def _decode_failure_reason(data: bytes, fmt: str, error: Exception) -> str:
  message = str(error).splitlines()[-1].strip() if str(error) else type(error).__name__
  message = message.split("}}")[-1].strip()
  if fmt == "JPEG" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
    return "truncated: JPEG end marker missing"
  if fmt == "JPEG" and b"\xff\xc3" in data[:4096]:
    return "undecodable: lossless JPEG is not supported by the decoder"
  return f"undecodable: {message}"


PILLOW_DECODED = "pillow_decoded"


def pillow_reads_completely(data: bytes) -> bool:
  """Whether Pillow decodes every pixel of the file (truncated data raises)."""
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
    return True
  except Exception:  # Pillow raises many types for bad data.
    return False


def pillow_decode(data: bytes) -> "np.ndarray":
  """uint8 (H, W, 3) RGB of a file through Pillow (first frame), for what TensorFlow cannot read."""
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"))


def decode_check(data: bytes, fmt: str) -> tf.Tensor:
  """Decodes with TensorFlow; raises `tf.errors.OpError` if the data is bad.

  A JPEG decodes at 1/8 scale: libjpeg still reads and Huffman-decodes every
  byte of the scan data (so truncation, corrupt data and its warnings all
  surface), and skips only the full-size inverse DCT — about twice as fast.
  """
  if fmt == "JPEG":
    return tf.io.decode_jpeg(data, channels=3, ratio=8)
  return tf.io.decode_image(data, channels=3, expand_animations=False)


def perceptual_hash(image) -> str:
  """A 64-bit difference hash (dHash) of a decoded image, as 16 hex digits: gray, box
  resized to 9x8, one bit per pair of horizontal neighbours. Re-encodings, resizes and
  small edits of one picture mostly keep it. (numpy and Pillow: a few eager TensorFlow
  ops per image would cost more than the validation itself.)"""
  pixels = np.asarray(image, np.float32)
  gray = pixels @ np.asarray([0.299, 0.587, 0.114], np.float32)
  small = np.asarray(Image.fromarray(gray, mode="F").resize((9, 8), Image.Resampling.BOX))
  bits = np.packbits(small[:, 1:] > small[:, :-1])
  return bits.tobytes().hex()


# Bytes after a JPEG's end marker tolerated as they are (padding); more are trimmed.
TRAILING_SLACK = 4096


def jpeg_end(data: bytes) -> Optional[int]:
  """Offset just past the end-of-image marker of a JPEG, found by walking its segments
  (a thumbnail's own end marker inside APP1 is skipped); None if there is none."""
  if data[:2] != b"\xff\xd8":
    return None
  i, n = 2, len(data)
  while i + 2 <= n:
    if data[i] != 0xFF:
      return None
    marker = data[i + 1]
    if marker == 0xFF:  # fill byte
      i += 1
      continue
    if marker == 0xD9:
      return i + 2
    if 0xD0 <= marker <= 0xD7 or marker == 0x01:
      i += 2
      continue
    if i + 4 > n:
      return None
    i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    if marker == 0xDA:  # entropy-coded data runs to the next marker that is not FF00 or RSTn
      while True:
        j = data.find(b"\xff", i)
        if j < 0 or j + 1 >= n:
          return None
        following = data[j + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
          i = j + 2
        elif following == 0xFF:
          i = j + 1
        else:
          i = j
          break
  return None


def inspect(data: bytes, path: str, class_dir: str, limits: Limits) -> Verdict:
  """Decides the fate of one file from its bytes (no warning capture here)."""
  # Every verdict carries the hash of the bytes validated: the writer compares it.
  base = dict(path=path, class_dir=class_dir, size_bytes=len(data), sha256=sha256_of(data))
  if not data:
    return Verdict(status=SKIPPED, reason="empty: zero bytes", **base)
  try:
    fmt, width, height, mode = _read_header(data)
  except Image.DecompressionBombError as e:
    return Verdict(status=SKIPPED, reason=f"too_many_pixels: {e}", **base)
  except Exception as e:  # Pillow raises many types for garbage input.
    return Verdict(status=SKIPPED, reason=_header_failure_reason(data, e), **base)
  base.update(format=fmt, width=width, height=height)
  if fmt not in DECODABLE_FORMATS:
    return Verdict(status=SKIPPED, reason=f"unsupported_format: {fmt}", **base)
  if width * height > limits.max_pixels:
    return Verdict(
        status=SKIPPED,
        reason=f"too_many_pixels: header declares {width}x{height} > {limits.max_pixels}",
        **base,
    )
  if min(width, height) < limits.min_side:
    return Verdict(
        status=SKIPPED,
        reason=f"too_small: {width}x{height}, min side {limits.min_side}",
        **base,
    )
  if fmt == "BMP" and image_headers.bmp_needs_pillow(data[:34]):
    # TensorFlow rejects it, or (8-bit palette) decodes palette indices as gray: Pillow reads it.
    if pillow_reads_completely(data):
      return Verdict(status=TRANSCODED, reason=(
          f"{PILLOW_DECODED}: BMP of {int.from_bytes(data[28:30], 'little')} bits or RLE, which "
          "TensorFlow rejects or misreads"), **base)
    return Verdict(status=SKIPPED, reason="undecodable: BMP data incomplete or corrupt (Pillow)", **base)
  try:
    decoded = decode_check(data, fmt)
  except tf.errors.OpError as e:
    reason = _decode_failure_reason(data, fmt, e)
    if fmt != "JPEG" and pillow_reads_completely(data):
      # A valid file TensorFlow's decoder rejects (RLE, 1/4-bit or 16-bit BMP, some GIF/WebP):
      # stored through Pillow's decode.
      return Verdict(status=TRANSCODED, reason=(
          f"{PILLOW_DECODED}: {fmt} that TensorFlow cannot decode ({reason.split(': ', 1)[-1]})"), **base)
    return Verdict(status=SKIPPED, reason=reason, **base)
  if limits.near_duplicates:  # from the decode validation made anyway (1/8 scale for JPEG)
    if fmt == "JPEG" and min(decoded.shape[:2]) < 16:  # too few pixels left: decode in full
      decoded = tf.io.decode_jpeg(data, channels=3)
    base["phash"] = perceptual_hash(decoded)
  if fmt != "JPEG":
    return Verdict(status=TRANSCODED, reason=f"format: {fmt}", **base)
  if mode not in ("L", "RGB"):
    return Verdict(status=TRANSCODED, reason=f"colour space: {mode}", **base)
  if not data.endswith(b"\xff\xd9"):
    end = jpeg_end(data)
    if end is not None and len(data) - end > TRAILING_SLACK:
      return Verdict(status=REPAIRED, reason=(
          f"trailing_bytes: {len(data) - end} bytes after the JPEG end marker trimmed"), **base)
  return Verdict(status=KEPT, **base)


class _CapturedStderr:
  """Redirects file descriptor 2 (where libjpeg prints) into a temporary file."""

  def __init__(self):
    self.text = ""

  @contextlib.contextmanager
  def capture(self) -> Iterator["_CapturedStderr"]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
      os.dup2(tmp.fileno(), 2)
      try:
        yield self
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        self.text = tmp.read().decode("utf-8", "replace")


# TensorFlow's own log lines for a file that failed to decode: the verdict's reason says it.
_DECODER_LOG = re.compile(r"(jpeg_mem|png_io|gif_io|decode_image_op)\.cc")


def _split_warnings(text: str) -> tuple[list[str], str]:
  warn, other = [], []
  for line in text.splitlines():
    if _LIBJPEG_WARNING.match(line):
      warn.append(line)
    elif line.strip() and not _DECODER_LOG.search(line):
      other.append(line)
  return warn, "\n".join(other)


_QUIET_LOCK = threading.Lock()


def decode_quietly(data: bytes, channels: int) -> tf.Tensor:
  """Decodes a file known to make libjpeg warn, without printing the warning."""
  with _QUIET_LOCK:
    cap = _CapturedStderr()
    with cap.capture():
      image = tf.io.decode_image(data, channels=channels, expand_animations=False)
  _, other = _split_warnings(cap.text)
  if other:
    print(other, file=sys.stderr)
  return image


def _unreadable(e: Exception) -> str:
  if isinstance(e, sources_lib.SourceError):
    return str(e)
  return f"unreadable: {getattr(e, 'strerror', None) or e}"


def _streamed(source, cand: sources_lib.Candidate, status: str, reason: str) -> Verdict:
  """A verdict for a file not read whole: hashed in chunks (bounded memory)."""
  try:
    with source.open(cand.path) as f:
      digest, size = sources_lib.stream_sha256(f)
  except (OSError, ValueError) as e:
    return Verdict(cand.path, cand.class_dir, status, reason=f"{reason}; {_unreadable(e)}")
  return Verdict(cand.path, cand.class_dir, status, reason=reason, size_bytes=size, sha256=digest)


def read_bounded(source, path: str, max_bytes: int) -> Optional[bytes]:
  """The file's bytes, or None if it has more than `max_bytes` (never read whole then)."""
  with source.open(path) as f:
    # The open file's own size where it has one: a second path lookup (and symlink check)
    # per file cost more than the read itself.
    size = os.fstat(f.fileno()).st_size if _has_fileno(f) else source.size(path)
    if size > max_bytes:
      return None
    data = f.read(max_bytes + 1)
  return None if len(data) > max_bytes else data


def _has_fileno(f) -> bool:
  try:
    f.fileno()
    return True
  except (AttributeError, OSError, io.UnsupportedOperation):
    return False


def _check(source, cand: sources_lib.Candidate, limits: Limits) -> Verdict:
  if cand.skip_reason:
    return Verdict(cand.path, cand.class_dir, SKIPPED, reason=cand.skip_reason)
  if not cand.is_image:
    return _streamed(source, cand, IGNORED, cand.ignore_reason or "not an image file name")
  try:
    data = read_bounded(source, cand.path, limits.max_file_bytes)
  except (OSError, ValueError) as e:
    return Verdict(cand.path, cand.class_dir, SKIPPED, reason=_unreadable(e))
  if data is None:
    return _streamed(source, cand, SKIPPED, f"too_large: more than max_file_bytes={limits.max_file_bytes}")
  return inspect(data, cand.path, cand.class_dir, limits)


def _mark_if_warned(v: Verdict, text: str) -> Verdict:
  warn, other = _split_warnings(text)
  if other:
    print(other, file=sys.stderr)
  if warn and v.status == KEPT:
    return dataclasses.replace(v, status=REPAIRED, reason=f"libjpeg warning: {warn[0]}")
  return v


def check_alone(cand: sources_lib.Candidate, source, limits: Limits) -> Verdict:
  """Validates one file with its libjpeg warnings attributed to it (Beam workers)."""
  with _QUIET_LOCK:
    cap = _CapturedStderr()
    with cap.capture():
      v = _check(source, cand, limits)
  return _mark_if_warned(v, cap.text)


def _recheck_for_warnings(source, verdicts: list[Verdict]) -> list[Verdict]:
  """Decodes the chunk's clean JPEGs one at a time to find which one warned."""
  out = []
  for v in verdicts:
    if v.status == KEPT:
      data = source.read(v.path)
      cap = _CapturedStderr()
      with cap.capture():
        decode_check(data, v.format)
      v = _mark_if_warned(v, cap.text)
    out.append(v)
  return out


def validate(
    source,
    candidates: Sequence[sources_lib.Candidate],
    limits: Limits = Limits(),
    workers: Optional[int] = None,
    progress: bool = True,
) -> list[Verdict]:
  """Validates every candidate in parallel threads (decoding releases the GIL)."""
  workers = workers or os.cpu_count() or 1
  verdicts: list[Verdict] = []
  bar_out = os.fdopen(os.dup(2), "w")  # the bar must not land in the capture
  with contextlib.closing(bar_out), concurrent.futures.ThreadPoolExecutor(workers) as pool, tqdm.tqdm(
      total=len(candidates), desc="Validating images", unit=" files", file=bar_out, disable=not progress
  ) as bar:

    def check(cand):
      v = _check(source, cand, limits)
      bar.update(1)
      return v

    for start in range(0, len(candidates), _CHUNK):
      chunk = candidates[start:start + _CHUNK]
      cap = _CapturedStderr()
      with cap.capture():
        found = list(pool.map(check, chunk))
      warn, other = _split_warnings(cap.text)
      if other:
        print(other, file=sys.stderr)
      if warn:
        found = _recheck_for_warnings(source, found)
      verdicts.extend(found)
  return verdicts
