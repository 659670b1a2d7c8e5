"""Checking image files: the one header and format policy, then, for a build, a full decode.

Every entry point checks files here, so they agree on what is an image:

* `inspect` / `check` (the builders: decode, don't sniff): the header first (`headers`, so
  a bomb declaring 60000x60000 pixels costs nothing), the limits (`before_decode`), then a
  full decode with the decoder the policy picks (`decode`) — the decoder training uses —
  and what it tells (`after_decode`). `validate_files` runs these on many files in
  parallel and attributes libjpeg's warnings to the file that caused them; such files are
  re-encoded once. (A raw build's validation decodes by the one transform at the stored
  size instead, keeping the pixels: `validate_files.iter_validated_pixels`.)
* `check_file` (the folder loader, prediction): the header and limits of a file on disk,
  decoding only what may be cut off or what TensorFlow may reject (GIF, WebP), so checking
  every file before a training epoch costs microseconds a file.

Files are opened only if they are regular files and read whole only below
`Limits.max_file_bytes`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
from PIL import Image
import tensorflow as tf

from petpipe.images import decode
from petpipe.images import errors
from petpipe.images import files
from petpipe.images import filesystems
from petpipe.images import headers
from petpipe.images import pixels
from petpipe.images import quiet
from petpipe.images import sources as sources_lib

KEPT = "kept"  # stored as is (a clean JPEG)
TRANSCODED = "transcoded"  # a good image in another format or colour space
REPAIRED = "repaired"  # decodes, but libjpeg warned: re-encoded once
SKIPPED = "skipped"  # not usable; the reason says why
IGNORED = "ignored"  # not an image file name (Thumbs.db, .DS_Store, ...)

USABLE = (KEPT, TRANSCODED, REPAIRED)
PILLOW_DECODED = "pillow_decoded"
# TensorFlow refuses to decode images of 2^29 bytes or more ("Image too large").
MAX_DECODED_BYTES = 1 << 29
# Formats whose TensorFlow decode may fail on a file whose header is sound (then Pillow may
# rescue it): the folder loader's check decodes these once.
_DECODE_TO_CHECK = ("gif", "webp")
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


# The folder loader and prediction read what Keras and a user would: images of any size.
READER_LIMITS = Limits(min_side=1)


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

  @property
  def decoder(self) -> str:
    """The decoder the policy gave it (see `decode.DECODERS`)."""
    if self.reason.startswith(PILLOW_DECODED):
      return decode.PILLOW
    return {"JPEG": decode.JPEG, "WEBP": decode.WEBP}.get(self.format, decode.IMAGE)


sha256_of = files.sha256_hex


def limits_reason(header: headers.ImageHeader, limits: Limits) -> Optional[str]:
  """Why an image of this header is not usable under `limits`, or None."""
  width, height = header.width, header.height
  if width * height > limits.max_pixels:
    return f"too_many_pixels: header declares {width}x{height} > {limits.max_pixels}"
  if width * height * max(header.components, 3) >= MAX_DECODED_BYTES:
    return f"too_many_pixels: {width}x{height} is more than TensorFlow decodes (2^29 bytes)"
  if min(width, height) < limits.min_side:
    return f"too_small: {width}x{height}, min side {limits.min_side}"
  return None


def decode_check(data, decoder: str) -> tf.Tensor:
  """Decodes bytes (or a string tensor, in a graph) with TensorFlow, by `decoder` (not
  PILLOW); raises `tf.errors.OpError` if the data is bad.

  A JPEG decodes at 1/8 scale: libjpeg still reads and Huffman-decodes every byte of the
  scan data (so truncation, corrupt data and its warnings all surface), and skips only the
  full-size inverse DCT — about twice as fast.
  """
  if decoder == decode.JPEG:
    return decode.jpeg_at(data, 3, 8)
  return decode.decode(data, 3, decoder)


def decode_failure_reason(data: bytes, header: headers.ImageHeader, error: Exception) -> str:
  if header.format == "jpeg" and not data.rstrip(b"\0").endswith(b"\xff\xd9"):
    return "truncated: JPEG end marker missing"
  if not header.complete:
    return f"truncated: {header.pillow_format} cut off ({errors.one_line(error)})"
  return f"undecodable: {errors.one_line(error)}"


def _rescued(data: bytes, header: headers.ImageHeader, why: str) -> Optional[str]:
  """The TRANSCODED reason for a file Pillow reads completely, else None."""
  if decode.pillow_reads_completely(data):
    return f"{PILLOW_DECODED}: {why}"
  return None


def perceptual_hash(image) -> str:
  """A 64-bit difference hash (dHash) of a decoded image, as 16 hex digits: gray, box
  resized to 9x8, one bit per pair of horizontal neighbours. Re-encodings, resizes and
  small edits of one picture mostly keep it. (numpy and Pillow: a few eager TensorFlow
  ops per image would cost more than the validation itself.)"""
  image = np.asarray(image, np.float32)
  gray = image @ np.asarray(pixels.LUMA_WEIGHTS, np.float32)
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


@dataclasses.dataclass(frozen=True)
class Pending:
  """A file whose header and limits passed: its decode decides the rest.

  Attributes:
    data: the file's bytes.
    header: its header.
    base: the verdict's fields known so far (path, class, size, sha256, format, size).
  """

  data: bytes
  header: headers.ImageHeader
  base: dict

  @property
  def decoder(self) -> str:
    return decode.decoder_for(self.header)


def before_decode(data: bytes, path: str, class_dir: str, limits: Limits) -> Verdict | Pending:
  """What a file's bytes tell without decoding: a verdict (skipped), or what to decode."""
  # Every verdict carries the hash of the bytes validated: the writer compares it.
  base = dict(path=path, class_dir=class_dir, size_bytes=len(data), sha256=sha256_of(data))
  try:
    header = headers.parse(data)
  except headers.BadImageError as e:
    return Verdict(status=SKIPPED, reason=e.reason, **base)
  base.update(format=header.pillow_format, width=header.width, height=header.height)
  reason = limits_reason(header, limits)
  if reason:
    return Verdict(status=SKIPPED, reason=reason, **base)
  return Pending(data, header, base)


def after_decode(pending: Pending, limits: Limits, decoded=None,
                 error: Optional[tf.errors.OpError] = None) -> Verdict:
  """The verdict once `decode_check` gave `decoded` or raised `error` (neither for the BMPs
  only Pillow reads, which are not decoded by TensorFlow)."""
  data, header, base = pending.data, pending.header, dict(pending.base)
  if header.needs_pillow:
    # TensorFlow rejects it, or (8-bit palette) decodes palette indices as gray: Pillow reads it.
    bits = int.from_bytes(data[28:30], "little")
    rescued = _rescued(data, header, f"BMP of {bits} bits or RLE, which TensorFlow rejects or misreads")
    if rescued:
      return Verdict(status=TRANSCODED, reason=rescued, **base)
    return Verdict(status=SKIPPED, reason="undecodable: BMP data incomplete or corrupt (Pillow)", **base)
  if error is not None:
    reason = decode_failure_reason(data, header, error)
    rescued = header.format != "jpeg" and _rescued(
        data, header, f"{header.pillow_format} that TensorFlow cannot decode "
        f"({reason.split(': ', 1)[-1]})")
    if rescued:
      return Verdict(status=TRANSCODED, reason=rescued, **base)
    return Verdict(status=SKIPPED, reason=reason, **base)
  if limits.near_duplicates:  # from the decode validation made anyway (1/8 scale for JPEG)
    if header.format == "jpeg" and min(decoded.shape[:2]) < 16:  # too few pixels: full decode
      decoded = decode.jpeg_at(tf.constant(data), 3)
    base["phash"] = perceptual_hash(decoded)
  if header.format != "jpeg":
    return Verdict(status=TRANSCODED, reason=f"format: {header.pillow_format}", **base)
  if header.components == 4:
    return Verdict(status=TRANSCODED, reason="colour space: CMYK", **base)
  if not data.endswith(b"\xff\xd9"):
    end = jpeg_end(data)
    if end is not None and len(data) - end > TRAILING_SLACK:
      return Verdict(status=REPAIRED, reason=(
          f"trailing_bytes: {len(data) - end} bytes after the JPEG end marker trimmed"), **base)
  return Verdict(status=KEPT, **base)


def decided(pending: Pending, limits: Limits) -> Verdict:
  """The verdict of a pending file, decoded here (one file: see `validate_files` for many)."""
  if pending.decoder == decode.PILLOW:
    return after_decode(pending, limits)
  try:
    decoded = decode_check(pending.data, pending.decoder)
  except tf.errors.OpError as e:
    return after_decode(pending, limits, error=e)
  return after_decode(pending, limits, decoded)


def inspect(data: bytes, path: str, class_dir: str, limits: Limits) -> Verdict:
  """Decides the fate of one file from its bytes (no warning capture here)."""
  found = before_decode(data, path, class_dir, limits)
  return found if isinstance(found, Verdict) else decided(found, limits)


def unreadable(e: Exception) -> str:
  """The reason for a file that cannot be read."""
  if isinstance(e, sources_lib.SourceError):
    return str(e)
  if isinstance(e, filesystems.NotRegularFileError):
    return files.not_regular_reason(e.kind)
  return f"unreadable: {errors.one_line(e)}"


def _streamed(source, cand: sources_lib.Candidate, status: str, reason: str) -> Verdict:
  """A verdict for a file not read whole: hashed in chunks (bounded memory)."""
  try:
    with source.open(cand.path) as f:
      digest, size = files.stream_sha256(f)
  except (OSError, ValueError) as e:
    return Verdict(cand.path, cand.class_dir, status, reason=f"{reason}; {unreadable(e)}")
  return Verdict(cand.path, cand.class_dir, status, reason=reason, size_bytes=size, sha256=digest)


def read_bounded(source, path: str, max_bytes: int) -> Optional[bytes]:
  """The file's bytes, or None if it has more than `max_bytes` (never read whole then)."""
  local = getattr(source, "local_path", None)
  on_disk = local(path) if local is not None else None
  if on_disk is not None:
    return filesystems.read_local_bounded(on_disk, max_bytes)
  with source.open(path) as f:
    size = None if files.has_fileno(f) else source.size(path)
    return files.read_bounded(f, max_bytes, size)


def prepare(source, cand: sources_lib.Candidate, limits: Limits) -> Verdict | Pending:
  """Reads one candidate of `source`: its verdict when no decode is needed (a file skipped,
  ignored, too large, unreadable, or refused by its header), else what to decode."""
  if cand.skip_reason:
    return Verdict(cand.path, cand.class_dir, SKIPPED, reason=cand.skip_reason)
  if not cand.is_image:
    return _streamed(source, cand, IGNORED, cand.ignore_reason or "not an image file name")
  try:
    data = read_bounded(source, cand.path, limits.max_file_bytes)
  except (OSError, ValueError) as e:
    return Verdict(cand.path, cand.class_dir, SKIPPED, reason=unreadable(e))
  if data is None:
    return _streamed(source, cand, SKIPPED, f"too_large: more than max_file_bytes={limits.max_file_bytes}")
  return before_decode(data, cand.path, cand.class_dir, limits)


def check(source, cand: sources_lib.Candidate, limits: Limits) -> Verdict:
  """One candidate's verdict (no warning capture here)."""
  found = prepare(source, cand, limits)
  return found if isinstance(found, Verdict) else decided(found, limits)


@dataclasses.dataclass(frozen=True)
class FileCheck:
  """What `check_file` found: a usable file's header and decoder, or the reason it is not.

  Attributes:
    header: the file's header (None when unusable).
    decoder: the decoder the policy gave it (see `decode.DECODERS`), or "".
    reason: why it is not usable ("" when it is).
  """

  header: Optional[headers.ImageHeader] = None
  decoder: str = ""
  reason: str = ""


def check_file(path: str, limits: Limits = READER_LIMITS) -> FileCheck:
  """Checks one image file on disk (any file system TensorFlow knows) from its header, without
  decoding it except where the header cannot tell (see `check_bytes`); only then is it read
  whole."""
  try:
    with filesystems.open_read(path) as f:
      size = os.fstat(f.fileno()).st_size if files.has_fileno(f) else filesystems.stat(path)[0]
      if size > limits.max_file_bytes:
        return FileCheck(reason=f"too_large: more than max_file_bytes={limits.max_file_bytes}")
      header = headers.read(f)
      found = _from_header(header, limits)
      if found is not None:
        return found
      f.seek(0)
      data = f.read()
  except headers.BadImageError as e:
    return FileCheck(reason=e.reason)
  except (OSError, ValueError) as e:
    return FileCheck(reason=unreadable(e))
  return _decoded(data, header, limits)


def check_bytes(data: bytes, limits: Limits = READER_LIMITS) -> FileCheck:
  """Checks one image file's bytes from its header, decoding them only where the header
  cannot tell: a file that may be cut off, and GIF and WebP, which TensorFlow's decoder may
  reject (Pillow then rescues what it reads completely, as the builders do)."""
  if len(data) > limits.max_file_bytes:
    return FileCheck(reason=f"too_large: more than max_file_bytes={limits.max_file_bytes}")
  try:
    header = headers.parse(data)
  except headers.BadImageError as e:
    return FileCheck(reason=e.reason)
  found = _from_header(header, limits)
  return found if found is not None else _decoded(data, header, limits)


def _from_header(header: headers.ImageHeader, limits: Limits) -> Optional[FileCheck]:
  """The check's result from the header alone, or None when a decode must tell."""
  reason = limits_reason(header, limits)
  if reason:
    return FileCheck(reason=reason)
  decoder = decode.decoder_for(header)
  if header.complete and header.format not in _DECODE_TO_CHECK and decoder != decode.PILLOW:
    return FileCheck(header, decoder)
  return None


def _decoded(data: bytes, header: headers.ImageHeader, limits: Limits) -> FileCheck:
  with quiet.decoding():
    verdict = inspect(data, "", "", dataclasses.replace(limits, near_duplicates=False))
  if not verdict.usable:
    return FileCheck(reason=verdict.reason)
  return FileCheck(header, verdict.decoder)


def decode_quietly(data: bytes, channels: int, decoder: str, size=None,
                   header: Optional[headers.ImageHeader] = None) -> tf.Tensor:
  """`decode.decode_bytes`, keeping libjpeg's warnings (for files known to make it warn) and
  TensorFlow's decoder logs off the console."""
  with quiet.decoding():
    return decode.decode_bytes(data, channels, decoder, size, header)
