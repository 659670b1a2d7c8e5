"""`images.headers`: format, size and completeness from a file's first and last bytes, with the
reason a bad file is refused for."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
import pytest

from petpipe.images import headers


def write(tmp_path, name: str, data: bytes) -> str:
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def read_header(path: str) -> headers.ImageHeader:
  with open(path, "rb") as f:
    return headers.read(f)


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
  header = read_header(write(tmp_path, "x.jpg", encoded(fmt, mode)))
  assert (header.format, header.height, header.width) == (name, 20, 30)
  assert header.components == components and header.complete


def test_finds_the_jpeg_frame_after_a_large_exif_segment(tmp_path):
  exif = Image.Exif()
  exif[0x010E] = "x" * 30000  # ImageDescription
  data = encoded("JPEG", exif=exif.tobytes(), progressive=True)
  assert read_header(write(tmp_path, "x.jpg", data)).height == 20


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_cut_off_file_is_marked_incomplete(tmp_path, fmt):
  rng = np.random.default_rng(0)
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(buffer, fmt)
  data = buffer.getvalue()
  assert not read_header(write(tmp_path, "x", data[:len(data) * 3 // 4])).complete


def png_header(side: int) -> bytes:
  """A PNG signature and IHDR chunk declaring a side x side RGB image, and nothing else."""
  size = side.to_bytes(4, "big")
  return b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + size + size + b"\x08\x02\x00\x00\x00"


@pytest.mark.parametrize("data,reason", [
    (b"", "empty: zero bytes"),
    (b"<html>404</html>", "not_an_image: text or HTML, not an image"),
    (b"\x00\x01\x02\x03garbage", "not_an_image: unrecognised image data"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated: JPEG cut off before its frame header"),
    (png_header(0), "undecodable: image of size 0x0"),
    (b"II*\x00" + bytes(60), "unsupported_format: TIFF"),
    (b"\x00\x00\x00\x18ftypheic" + bytes(40), "unsupported_format: HEIC"),
])
def test_bad_files_are_refused_with_the_manifests_reason(tmp_path, data, reason):
  with pytest.raises(headers.BadImageError) as info:
    read_header(write(tmp_path, "bad.jpg", data))
  assert info.value.reason == reason


def test_a_bomb_header_is_read_without_reading_its_pixels(tmp_path):
  header = read_header(write(tmp_path, "bomb.png", png_header(60000)))
  assert (header.height, header.width) == (60000, 60000)


def test_bytes_in_memory_and_a_file_on_disk_give_one_header(tmp_path):
  data = encoded("WEBP", "RGBA", lossless=True)
  assert headers.parse(data) == read_header(write(tmp_path, "x.webp", data))
  assert headers.parse(data).components == 4


def test_lossless_jpeg_is_refused(tmp_path):
  data = bytearray(encoded("JPEG"))
  frame = data.index(b"\xff\xc0")
  data[frame + 1] = 0xC3  # Mark the frame lossless.
  with pytest.raises(headers.BadImageError, match="undecodable: lossless JPEG"):
    read_header(write(tmp_path, "x.jpg", bytes(data)))
