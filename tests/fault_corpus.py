"""A folder of every kind of bad or unusual file a real image folder holds.

Used to prove the builders never crash, never drop a good file and record a
specific reason for every bad one. Each entry says what a build must do.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from typing import Callable

import numpy as np
from PIL import Image

from petpipe import sample_data

KEPT, TRANSCODED, REPAIRED, SKIPPED, IGNORED = "kept", "transcoded", "repaired", "skipped", "ignored"


@dataclasses.dataclass(frozen=True)
class Fault:
  """One file of the corpus: its path under the root, kind, expected status and reason prefix."""

  path: str
  kind: str
  expected: str
  reason: str = ""


def _picture(rng, width=48, height=40, animal="cat") -> Image.Image:
  return sample_data.render_picture(animal, width, height, rng)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(side: int = 60000) -> bytes:
  ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def _lossless_jpeg(rng) -> bytes:
  # A baseline JPEG whose frame marker says "lossless" (SOF3): libjpeg refuses it.
  return _encode(_picture(rng), "JPEG").replace(b"\xff\xc0", b"\xff\xc3", 1)


def _animated_gif(rng) -> bytes:
  frames = [_picture(rng) for _ in range(3)]
  return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated(rng) -> bytes:
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
  return _encode(_picture(rng), "JPEG", exif=exif.tobytes())


def _palette_png(rng) -> bytes:
  image = _picture(rng).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
  return _encode(image, "PNG", transparency=0)


def _png16(rng) -> bytes:
  pixels = (rng.random((40, 48)) * 65535).astype(np.uint16)
  return _encode(Image.fromarray(pixels), "PNG")


# BMPs that TensorFlow's decoder rejects and Pillow reads (written by hand: Pillow writes none).

def _bmp(width, height, bpp, compression, palette, pixel_data):
  pal = b"".join(bytes((b, g, r, 0)) for r, g, b in palette)
  offset = 14 + 40 + len(pal)
  dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, compression, len(pixel_data), 2835, 2835, len(palette), 0)
  return b"BM" + struct.pack("<IHHI", offset + len(pixel_data), 0, 0, offset) + dib + pal + pixel_data

def _rows(indices_rows, pack):
  out = b""
  for row in indices_rows[::-1]:  # bottom-up
    data = pack(row)
    out += data + b"\0" * (-len(data) % 4)
  return out

def _bmp_4bit(rng, w=20, h=16):
  palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(16)]
  idx = rng.integers(0, 16, (h, w))
  pack = lambda row: bytes((int(row[i]) << 4) | (int(row[i + 1]) if i + 1 < len(row) else 0) for i in range(0, len(row), 2))
  return _bmp(w, h, 4, 0, palette, _rows(idx, pack))

def _bmp_rle8(rng, w=20, h=16):
  palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(256)]
  idx = rng.integers(0, 256, (h, w // 4))
  data = b""
  for row in idx[::-1]:
    for v in row:
      data += bytes((4, int(v)))
    data += b"\0\0"
  data += b"\0\1"
  return _bmp(w, h, 8, 1, palette, data)

def _bmp_16bit(rng, w=20, h=16):
  px = rng.integers(0, 2**15, (h, w))
  pack = lambda row: b"".join(struct.pack("<H", int(v)) for v in row)
  return _bmp(w, h, 16, 0, [], _rows(px, pack))


# kind → (file name suffix, bytes maker, expected status, reason prefix)
_FILE_KINDS: dict[str, tuple[str, Callable, str, str]] = {
    "zero_byte": (".jpg", lambda rng: b"", SKIPPED, "empty"),
    "truncated_25": (".jpg", lambda rng: (lambda d: d[: len(d) // 4])(_encode(_picture(rng), "JPEG")), SKIPPED, "truncated"),
    "truncated_50": (".jpg", lambda rng: (lambda d: d[: len(d) // 2])(_encode(_picture(rng), "JPEG")), SKIPPED, "truncated"),
    "truncated_90": (".jpg", lambda rng: (lambda d: d[: len(d) * 9 // 10])(_encode(_picture(rng), "JPEG")), SKIPPED, "truncated"),
    "random_bytes": (".jpg", lambda rng: b"\0\0" + rng.bytes(2000), SKIPPED, "not_an_image"),
    "html_as_jpg": (".jpg", lambda rng: b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", SKIPPED, "not_an_image: text or HTML"),
    "png_as_jpg": (".jpg", lambda rng: _encode(_picture(rng), "PNG"), TRANSCODED, "format: PNG"),
    "gif_as_jpg": (".jpg", lambda rng: _encode(_picture(rng), "GIF"), TRANSCODED, "format: GIF"),
    "bmp_as_jpg": (".jpg", lambda rng: _encode(_picture(rng), "BMP"), TRANSCODED, "format: BMP"),
    "webp_as_jpg": (".jpg", lambda rng: _encode(_picture(rng), "WEBP"), TRANSCODED, "format: WEBP"),
    "animated_gif": (".gif", _animated_gif, TRANSCODED, "format: GIF"),
    "cmyk": (".jpg", lambda rng: _encode(_picture(rng).convert("CMYK"), "JPEG"), TRANSCODED, "colour space: CMYK"),
    "grayscale": (".jpg", lambda rng: _encode(_picture(rng).convert("L"), "JPEG"), KEPT, ""),
    "png16": (".png", _png16, TRANSCODED, "format: PNG"),
    "palette_transparent_png": (".png", _palette_png, TRANSCODED, "format: PNG"),
    "rgba_png": (".png", lambda rng: _encode(_picture(rng).convert("RGBA"), "PNG"), TRANSCODED, "format: PNG"),
    "exif_only": (".jpg", lambda rng: sample_data._strip_jfif(_encode(_picture(rng), "JPEG", exif=Image.Exif().tobytes())), KEPT, ""),
    "exif_rotated": (".jpg", _exif_rotated, KEPT, ""),
    "progressive": (".jpg", lambda rng: _encode(_picture(rng), "JPEG", progressive=True), KEPT, ""),
    "extraneous_bytes": (".jpg", lambda rng: (lambda d: d[:-2] + b"\xff\x00" * 12 + d[-2:])(_encode(_picture(rng), "JPEG")), REPAIRED, "libjpeg warning"),
    "bmp_1bit": (".bmp", lambda rng: _encode(_picture(rng).convert("1"), "BMP"), TRANSCODED, "pillow_decoded: BMP"),
    "bmp_4bit": (".bmp", _bmp_4bit, TRANSCODED, "pillow_decoded: BMP"),
    "bmp_rle8": (".bmp", _bmp_rle8, TRANSCODED, "pillow_decoded: BMP"),
    "bmp_16bit": (".bmp", _bmp_16bit, TRANSCODED, "pillow_decoded: BMP"),
    "bmp_rle8_truncated": (".bmp", lambda rng: _bmp_rle8(rng)[:-40], SKIPPED, "undecodable"),
    "bomb_header": (".jpg", lambda rng: _bomb_png(), SKIPPED, "too_many_pixels"),
    "lossless_jpeg": (".jpg", _lossless_jpeg, SKIPPED, "undecodable"),
    "one_pixel": (".png", lambda rng: _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), SKIPPED, "too_small"),
    # Its colour is drawn so that copies are distinct files, not exact duplicates.
    "wide_10000x10": (".jpg", lambda rng: _encode(Image.new("RGB", (10000, 10), tuple(int(c) for c in rng.integers(0, 256, 3))), "JPEG"), KEPT, ""),
}
_ODD_NAMES = ("with space {i}.jpg", "ünïcødé_猫_{i}.jpg", "new\nline {i}.jpg")


def write_fault_corpus(root: str, good_per_class: int = 10, copies: int = 3, seed: int = 0) -> list[Fault]:
  """Writes `root/{a,b}/...`: good JPEGs plus `copies` files of every kind.

  Returns one `Fault` per file written, good images included (kind "good").
  """
  rng = np.random.default_rng(seed)
  faults = []

  def put(rel: str, data: bytes, kind: str, expected: str, reason: str = "") -> None:
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)
    faults.append(Fault(rel, kind, expected, reason))

  for c, animal in (("a", "cat"), ("b", "dog")):
    for i in range(good_per_class):
      put(f"{c}/good_{i}.jpg", _encode(_picture(rng, animal=animal), "JPEG"), "good", KEPT)
  for copy in range(copies):
    c = "ab"[copy % 2]
    for kind, (suffix, make, expected, reason) in _FILE_KINDS.items():
      put(f"{c}/{kind}_{copy}{suffix}", make(rng), kind, expected, reason)
    for pattern in _ODD_NAMES:
      put(f"{c}/{pattern.format(i=copy)}", _encode(_picture(rng), "JPEG"), "odd_name", KEPT)
    put(f"{c}/sub_{copy}/Thumbs.db", b"\xd0\xcf\x11\xe0" + rng.bytes(100), "thumbs_db", IGNORED, "not an image file name")
    put(f"{c}/sub_{copy}/.DS_Store", b"\0\0\0\1Bud1" + rng.bytes(50), "ds_store", IGNORED, "not an image file name")
    faults += _links_and_permissions(root, c, copy, rng)
  return faults


def _links_and_permissions(root: str, c: str, copy: int, rng) -> list[Fault]:
  outside = os.path.join(os.path.dirname(os.path.abspath(root)), f"outside_{copy}.jpg")
  with open(outside, "wb") as f:
    f.write(_encode(_picture(rng), "JPEG"))
  os.symlink(outside, os.path.join(root, c, f"link_outside_{copy}.jpg"))
  loop = os.path.join(root, c, f"link_loop_{copy}.jpg")
  os.symlink(loop, loop)
  locked = os.path.join(root, c, f"no_read_permission_{copy}.jpg")
  with open(locked, "wb") as f:
    f.write(_encode(_picture(rng), "JPEG"))
  os.chmod(locked, 0)
  # Root reads any file whatever its mode: then the file is simply good.
  readable = os.access(locked, os.R_OK)
  return [
      Fault(f"{c}/link_outside_{copy}.jpg", "symlink_outside_root", SKIPPED, "unreadable: symlink points outside the root"),
      Fault(f"{c}/link_loop_{copy}.jpg", "symlink_loop", SKIPPED, "unreadable"),
      Fault(f"{c}/no_read_permission_{copy}.jpg", "no_read_permission", KEPT if readable else SKIPPED, "" if readable else "unreadable"),
  ]
