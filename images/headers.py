"""The one header reader: what an image file's first and last bytes say, without decoding it.

A few dozen bytes tell the format, size and channel count of a JPEG, PNG, GIF, BMP or WebP,
and whether the file ends as its format says it must (a truncated download does not). The
builders' validation, the folder loader's check and prediction all read headers here, from
bytes already in memory or from an open file (the first 64 KiB and the last 64 bytes), so a
bomb declaring 60000x60000 pixels costs nothing. Errors carry the reason the manifest shows,
"kind: detail" (`empty`, `truncated`, `not_an_image`, `unsupported_format`, `undecodable`).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import BinaryIO, Callable, Optional

# Bytes read at once from a file's start: most JPEGs whole, any header but a large EXIF's.
HEAD_BYTES = 1 << 16
TAIL_BYTES = 64

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
# Formats recognised only to name them in the reason they are refused.
_OTHER_SIGNATURES = (
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"8BPS", "PSD"),
    (0, b"\x00\x00\x01\x00", "ICO"), (0, b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG2000"), (0, b"\xff\x0a", "JPEGXL"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEGXL"), (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"), (4, b"ftypavif", "AVIF"), (0, b"%PDF", "PDF"),
    (0, b"qoif", "QOI"), (0, b"DDS ", "DDS"),
)


class BadImageError(ValueError):
  """A file that is not an image TensorFlow can decode.

  Attributes:
    reason: the one-line reason, "kind: detail" (the manifest's).
  """

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageHeader:
  """What an image file's first and last bytes say about it.

  Attributes:
    format: "jpeg", "png", "gif", "bmp" or "webp".
    height: height in pixels.
    width: width in pixels.
    components: stored channels: 1 (gray), 2 (gray+alpha), 3 (colour, YCbCr or palette)
      or 4 (RGBA, or CMYK for JPEG).
    complete: the file ends with its format's end marker; False means it may be truncated.
    needs_pillow: TensorFlow's decoder rejects or misreads it (see `bmp_needs_pillow`).
  """

  format: str
  height: int
  width: int
  components: int
  complete: bool
  needs_pillow: bool = False

  @property
  def pillow_format(self) -> str:
    """The format as Pillow and the dataset card name it ("JPEG", "PNG", "WEBP", ...)."""
    return self.format.upper()


def sniff_format(head: bytes) -> Optional[str]:
  """The format the first bytes announce ("jpeg", "png", "gif", "bmp", "webp"), or None."""
  if head.startswith(b"\xff\xd8\xff"):
    return "jpeg"
  if head.startswith(_PNG_SIGNATURE):
    return "png"
  if head[:6] in (b"GIF87a", b"GIF89a"):
    return "gif"
  if head[:2] == b"BM":
    return "bmp"
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
    return "webp"
  return None


def bmp_needs_pillow(head: bytes) -> bool:
  """Whether TensorFlow's BMP decoder rejects or misreads a BMP (from its first 34 bytes).

  It reads only uncompressed 24- and 32-bit pixels: it rejects RLE, 1-, 4- and 16-bit BMPs,
  and decodes 8-bit palette BMPs as gray palette indices, ignoring the palette.
  """
  if head[:2] != b"BM" or len(head) < 30:
    return False
  bits, = struct.unpack("<H", head[28:30])
  compression = struct.unpack("<I", head[30:34])[0] if len(head) >= 34 else 0
  return bits < 24 or compression not in (0, 3)


def read(f: BinaryIO) -> ImageHeader:
  """The header of the image file open in `f` (binary, seekable): its first 64 KiB (more if a
  large EXIF segment precedes a JPEG's frame header) and its last 64 bytes.

  Raises:
    BadImageError: it is not an image TensorFlow can decode; `reason` says why.
    OSError: the file cannot be read.
  """
  start = f.read(HEAD_BYTES)
  size = f.seek(0, os.SEEK_END)
  if size <= len(start):
    tail = start[-TAIL_BYTES:]
  else:
    f.seek(max(0, size - TAIL_BYTES))
    tail = f.read()

  def more(offset: int, count: int) -> bytes:
    f.seek(offset)
    return f.read(count)

  return parse(start, size, tail, more)


def parse(
    start: bytes,
    size: Optional[int] = None,
    tail: Optional[bytes] = None,
    more: Optional[Callable[[int, int], bytes]] = None,
) -> ImageHeader:
  """The header of an image from its first bytes (or all of them).

  Args:
    start: the file's first bytes (64 KiB is enough but for JPEGs with a large EXIF).
    size: the file's size in bytes; default `len(start)` (the whole file is given).
    tail: the file's last bytes; default the end of `start`.
    more: reads `count` bytes at `offset`, for a JPEG whose frame header lies past `start`.

  Raises:
    BadImageError: it is not an image TensorFlow can decode; `reason` says why.
  """
  size = len(start) if size is None else size
  tail = start[-TAIL_BYTES:] if tail is None else tail
  if size == 0:
    raise BadImageError("empty: zero bytes")
  head = start[:34]
  fmt = sniff_format(head)
  if fmt == "jpeg":
    height, width, components = _jpeg_frame(start, size, more)
    return _sized(ImageHeader("jpeg", height, width, components, b"\xff\xd9" in tail))
  if fmt == "png":
    if head[12:16] != b"IHDR" or len(head) < 26:
      raise _cut_or_bad(len(head) < 26, "PNG", "its IHDR header")
    width, height = struct.unpack(">II", head[16:24])
    components = _PNG_CHANNELS.get(head[25])
    if components is None:
      raise BadImageError(f"undecodable: PNG with unknown colour type {head[25]}")
    return _sized(ImageHeader("png", height, width, components, b"IEND" in tail))
  if fmt == "gif":
    if len(head) < 10:
      raise BadImageError("truncated: GIF cut off in its screen descriptor")
    width, height = struct.unpack("<HH", head[6:10])
    return _sized(ImageHeader("gif", height, width, 3, tail.rstrip(b"\x00").endswith(b";")))
  if fmt == "bmp":
    if len(head) < 30:
      raise BadImageError("truncated: BMP cut off in its info header")
    declared, = struct.unpack("<I", head[2:6])
    width, height = struct.unpack("<ii", head[18:26])
    bits, = struct.unpack("<H", head[28:30])
    return _sized(ImageHeader("bmp", abs(height), width, 4 if bits == 32 else 3,
                              size >= declared, bmp_needs_pillow(head)))
  if fmt == "webp":
    return _webp(start, size)
  raise BadImageError(_not_an_image(start))


def _cut_or_bad(cut: bool, fmt: str, what: str) -> BadImageError:
  if cut:
    return BadImageError(f"truncated: {fmt} cut off in {what}")
  return BadImageError(f"undecodable: {fmt} without {what}")


def _not_an_image(start: bytes) -> str:
  for offset, signature, name in _OTHER_SIGNATURES:
    if start[offset:offset + len(signature)] == signature:
      return f"unsupported_format: {name}"
  head = start[:512]
  if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
    return "not_an_image: text or HTML, not an image"
  return "not_an_image: unrecognised image data"


def _webp(start: bytes, size: int) -> ImageHeader:
  """VP8 (lossy), VP8L (lossless) or VP8X (extended) layout: each keeps its size elsewhere."""
  declared, = struct.unpack("<I", start[4:8])
  complete = size >= declared + 8
  chunk = start[12:16]
  data = start[20:30]
  if chunk == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
    width, height = (v & 0x3FFF for v in struct.unpack("<HH", data[6:10]))
    return _sized(ImageHeader("webp", height, width, 3, complete))
  if chunk == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
    bits, = struct.unpack("<I", data[1:5])
    width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return _sized(ImageHeader("webp", height, width, 4 if bits >> 28 & 1 else 3, complete))
  if chunk == b"VP8X" and len(data) >= 10:
    width = int.from_bytes(data[4:7], "little") + 1
    height = int.from_bytes(data[7:10], "little") + 1
    return _sized(ImageHeader("webp", height, width, 4 if data[0] & 0x10 else 3, complete))
  raise _cut_or_bad(len(start) < 30, "WebP", "a readable VP8/VP8L/VP8X header")


def _jpeg_frame(data: bytes, size: int,
                more: Optional[Callable[[int, int], bytes]]) -> tuple[int, int, int]:
  """Walks the JPEG markers from the start to the frame header: (height, width, components).

  `data` is the file's start; when the markers run past it (a large EXIF segment), more is
  read with `more`, if given.
  """

  def need(end: int) -> bytes:
    nonlocal data
    if end > len(data) and more is not None and len(data) < size:
      data += more(len(data), max(end - len(data), HEAD_BYTES))
    return data

  cut = BadImageError("truncated: JPEG cut off before its frame header")
  pos = 2
  while True:
    if pos >= len(need(pos + 1)):
      raise cut
    if data[pos] != 0xFF:
      raise BadImageError("undecodable: JPEG header is corrupt (no marker where one must be)")
    pos += 1
    while pos < len(need(pos + 1)) and data[pos] == 0xFF:  # Fill bytes may pad a marker.
      pos += 1
    if pos >= len(data):
      raise cut
    code = data[pos]
    pos += 1
    if code == 0x01 or 0xD0 <= code <= 0xD8:  # Markers without a length.
      continue
    if code in (0xD9, 0xDA):
      raise BadImageError("undecodable: JPEG without a frame header before its image data")
    if pos + 2 > len(need(pos + 2)):
      raise cut
    length, = struct.unpack_from(">H", data, pos)
    if code in _JPEG_SOF:
      if pos + 8 > len(need(pos + 8)):
        raise cut
      _, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
      if code in _JPEG_LOSSLESS:
        raise BadImageError(
            "undecodable: lossless JPEG, which TensorFlow's decoder does not read")
      if components not in (1, 3, 4):
        raise BadImageError(f"undecodable: JPEG with {components} colour components")
      return height, width, components
    if length < 2:
      raise BadImageError("undecodable: JPEG header is corrupt (segment length below 2)")
    pos += length


def _sized(header: ImageHeader) -> ImageHeader:
  if header.height <= 0 or header.width <= 0:
    raise BadImageError(f"undecodable: image of size {header.height}x{header.width}")
  return header
