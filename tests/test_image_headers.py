"""`image_headers.read_header`: format, size and completeness from a file's first and last bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
import pytest

from petpipe.pipeline import image_headers


def write(tmp_path, name: str, data: bytes) -> str:
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def encoded(fmt: str, mode: str = "RGB", size=(30, 20), **options) -> bytes:
  buffer = io.BytesIO()
  Image.new(mode, size, 90).save(buffer, fmt, **options)
  return buffer.getvalue()


@pytest.mark.parametrize("fmt,mode,name,components", [
    ("JPEG", "RGB", "jpeg", 3), ("JPEG", "L", "jpeg", 1), ("JPEG", "CMYK", "jpeg", 4),
    ("PNG", "RGB", "png", 3), ("PNG", "LA", "png", 2), ("PNG", "RGBA", "png", 4),
    ("PNG", "P", "png", 3), ("GIF", "RGB", "gif", 3), ("BMP", "RGB", "bmp", 3),
    ("WEBP", "RGB", "webp", 3),
])
def test_reads_format_size_and_components(tmp_path, fmt, mode, name, components):
  header = image_headers.read_header(write(tmp_path, "x.jpg", encoded(fmt, mode)))
  assert (header.format, header.height, header.width) == (name, 20, 30)
  assert header.components == components and header.complete


def test_finds_the_jpeg_frame_after_a_large_exif_segment(tmp_path):
  exif = Image.Exif()
  exif[0x010E] = "x" * 30000  # ImageDescription
  data = encoded("JPEG", exif=exif.tobytes(), progressive=True)
  assert image_headers.read_header(write(tmp_path, "x.jpg", data)).height == 20


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_cut_off_file_is_marked_incomplete(tmp_path, fmt):
  rng = np.random.default_rng(0)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(buffer, fmt)
  data = buffer.getvalue()
  assert not image_headers.read_header(write(tmp_path, "x", data[:len(data) * 3 // 4])).complete


def png_header(side: int) -> bytes:
  """A PNG signature and IHDR chunk declaring a side x side RGB image, and nothing else."""
  size = side.to_bytes(4, "big")
  return b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + size + size + b"\x08\x02\x00\x00\x00"


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"<html>404</html>", "not a JPEG, PNG, GIF, BMP or WebP image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG cut off"),
    (png_header(60000), "too large to decode"),
    (png_header(0), "size 0x0"),
])
def test_bad_files_are_named_with_a_reason(tmp_path, data, reason):
  with pytest.raises(image_headers.BadImageError, match=reason):
    image_headers.read_header(write(tmp_path, "bad.jpg", data))


def test_lossless_jpeg_is_refused(tmp_path):
  data = bytearray(encoded("JPEG"))
  frame = data.index(b"\xff\xc0")
  data[frame + 1] = 0xC3  # Mark the frame lossless.
  with pytest.raises(image_headers.BadImageError, match="lossless JPEG"):
    image_headers.read_header(write(tmp_path, "x.jpg", bytes(data)))


def test_jpeg_size_reads_jpeg_bytes_only():
  assert image_headers.jpeg_size(encoded("JPEG", size=(30, 20))) == (20, 30)
  assert image_headers.jpeg_size(encoded("PNG")) is None
  assert image_headers.jpeg_size(b"\xff\xd8\xff\xe0\x00") is None
