"""Reads what an image file's header and trailer say, without decoding it.

A few dozen bytes tell the format, size and channel count of a JPEG, PNG, GIF, BMP or WebP and
whether the file ends as its format says it must (a truncated download does not). That
catches empty, foreign and cut-off files for microseconds each, before a training epoch
would crash on them; only files that look cut off need a real decode to be sure.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import BinaryIO, Optional, Union

from PIL import Image
from PIL import WebPImagePlugin  # noqa: F401  (opens WebP without loading every plugin)

from petpipe.pipeline import filesystems

# TensorFlow refuses to decode images of 2^29 bytes or more ("Image too large").
MAX_DECODED_BYTES = 1 << 29

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_TAIL_BYTES = 64
# Bytes read at once from a file's start: most JPEGs whole, any header but a large EXIF's.
_HEAD_BYTES = 1 << 16


class BadImageError(ValueError):
  """A file that cannot be an image TensorFlow decodes; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImageHeader:
  """What an image file's first and last bytes say about it.

  Attributes:
    format: "jpeg", "png", "gif", "bmp" or "webp" (which TensorFlow cannot decode).
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


def read_header(path: Union[str, os.PathLike]) -> ImageHeader:
  """Reads the header of the image at `path` (on any file system TensorFlow knows); raises
  `BadImageError` if it is not one."""
  with filesystems.open_read(path) as f:
    # One read holds a typical file whole, or its header: parsing bytes in memory is what
    # makes checking every file before the first epoch cheap (~3x fewer Python calls).
    start = f.read(_HEAD_BYTES)
    if not start:
      raise BadImageError("empty file")
    head = start[:34]
    size = f.seek(0, os.SEEK_END)
    if size <= len(start):
      tail = start[-_TAIL_BYTES:]
    else:
      f.seek(max(0, size - _TAIL_BYTES))
      tail = f.read()
    fmt = sniff_format(head)
    if fmt == "jpeg":
      height, width, components = _jpeg_frame(start, f)
      return ImageHeader("jpeg", height, width, components, b"\xff\xd9" in tail)
  if fmt == "png":
    if head[12:16] != b"IHDR" or len(head) < 26:
      raise BadImageError("PNG without an IHDR header")
    width, height = struct.unpack(">II", head[16:24])
    components = _PNG_CHANNELS.get(head[25])
    if components is None:
      raise BadImageError(f"PNG with unknown colour type {head[25]}")
    return _checked(ImageHeader("png", height, width, components, b"IEND" in tail))
  if fmt == "gif":
    if len(head) < 10:
      raise BadImageError("GIF without a screen descriptor")
    width, height = struct.unpack("<HH", head[6:10])
    return _checked(ImageHeader("gif", height, width, 3, tail.rstrip(b"\x00").endswith(b";")))
  if fmt == "bmp":
    if len(head) < 30:
      raise BadImageError("BMP without an info header")
    declared, = struct.unpack("<I", head[2:6])
    width, height = struct.unpack("<ii", head[18:26])
    bits, = struct.unpack("<H", head[28:30])
    return _checked(ImageHeader("bmp", abs(height), width, 4 if bits == 32 else 3,
                                size >= declared, bmp_needs_pillow(head)))
  if fmt == "webp":
    return _webp_header(path, head, size)
  raise BadImageError("not a JPEG, PNG, GIF, BMP or WebP image")


def jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
  """(height, width) from the header of JPEG bytes; None if they are not a readable JPEG."""
  if not data.startswith(b"\xff\xd8\xff"):
    return None
  try:
    height, width, _ = _jpeg_frame(data)
  except BadImageError:
    return None
  return height, width


def _webp_header(path, head: bytes, size: int) -> ImageHeader:
  """WebP sizes sit in one of three chunk layouts; Pillow knows them all."""
  try:
    with filesystems.open_read(path) as f, Image.open(f, formats=["WEBP"]) as image:
      width, height = image.size
      components = 4 if image.mode in ("RGBA", "LA") else 3
  except Exception as e:  # Pillow raises many types for a bad header.
    raise BadImageError(f"WebP header unreadable ({type(e).__name__})") from e
  declared, = struct.unpack("<I", head[4:8])
  return _checked(ImageHeader("webp", height, width, components, size >= declared + 8))


def _jpeg_frame(data: bytes, f: Optional[BinaryIO] = None) -> tuple[int, int, int]:
  """Walks the JPEG markers from the start to the frame header: (height, width, components).

  `data` is the file's start; when the markers run past it (a large EXIF segment), more is
  read from `f`, if given.
  """

  def need(end: int) -> bytes:
    nonlocal data
    if end > len(data) and f is not None:
      f.seek(len(data))
      data += f.read(max(end - len(data), _HEAD_BYTES))
    return data

  pos = 2
  while True:
    if pos >= len(need(pos + 1)):
      raise BadImageError("JPEG cut off before the frame header")
    if data[pos] != 0xFF:
      raise BadImageError("JPEG header is corrupt: no marker where one must be")
    pos += 1
    while pos < len(need(pos + 1)) and data[pos] == 0xFF:  # Fill bytes may pad a marker.
      pos += 1
    if pos >= len(data):
      raise BadImageError("JPEG cut off before the frame header")
    code = data[pos]
    pos += 1
    if code == 0x01 or 0xD0 <= code <= 0xD8:  # Markers without a length.
      continue
    if code in (0xD9, 0xDA):
      raise BadImageError("JPEG without a frame header before its image data")
    if pos + 2 > len(need(pos + 2)):
      raise BadImageError("JPEG cut off in its header")
    length, = struct.unpack_from(">H", data, pos)
    if code in _JPEG_SOF:
      if pos + 8 > len(need(pos + 8)):
        raise BadImageError("JPEG cut off in its frame header")
      _, height, width, components = struct.unpack_from(">BHHB", data, pos + 2)
      header = _checked(ImageHeader("jpeg", height, width, components, True))
      if components not in (1, 3, 4):
        raise BadImageError(f"JPEG with {components} colour components")
      if code in _JPEG_LOSSLESS:
        raise BadImageError("lossless JPEG, which TensorFlow's decoder does not read")
      return header.height, header.width, header.components
    if length < 2:
      raise BadImageError("JPEG header is corrupt")
    pos += length


def _checked(header: ImageHeader) -> ImageHeader:
  if header.height <= 0 or header.width <= 0:
    raise BadImageError(f"image of size {header.height}x{header.width}")
  if header.height * header.width * max(header.components, 3) >= MAX_DECODED_BYTES:
    raise BadImageError(
        f"image of {header.height}x{header.width} pixels is too large to decode"
    )
  return header
