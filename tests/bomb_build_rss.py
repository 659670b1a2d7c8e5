"""Run as a module (`python -m tests.bomb_build_rss DIR`, from the repository): peak RSS of a
tiny build, then of the same build with each memory bomb present:
files of 512 MiB (a video, a JPEG padded with zeros, a zip member inflating to it) and pictures
whose headers declare too many pixels (60000x60000, past Pillow's own limit, and a valid
10000x10000 PNG, past `max_pixels` only, which would decode to 300 MB of RGB).

Prints one JSON line {"clean_mb": ..., "<bomb>_mb": ...}: the process's peak RSS after each
build (peaks only grow, so each figure bounds that build's own peak).
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import sys
import zipfile
import zlib

import numpy as np
from PIL import Image

from tests import fault_corpus
from petpipe.builders.folder_config import FolderConfig
from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder

BOMB = 2**29  # 512 MiB: well above the 200 MB allowed, cheap enough to hash in a test
PIXEL_BOMB_SIDE = 10000  # 10^8 pixels: over max_pixels (Pillow's 89.5M), under Pillow's error (2x)


def jpeg(seed: int) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG")
  return buffer.getvalue()


def peak_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_folder(root: str) -> None:
  """cat/ and dog/ with 6 distinct JPEGs each (seeds 0-11; the padded bomb's is 99)."""
  pictures = {f"{cls}/{i}.jpg": jpeg(6 * k + i) for k, cls in enumerate(("cat", "dog")) for i in range(6)}
  assert len(set(pictures.values())) == len(pictures), "two pictures are the same file"
  for name, data in pictures.items():
    os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    with open(os.path.join(root, name), "wb") as f:
      f.write(data)


def zip_folder(root: str, path: str, big_member: bool) -> None:
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
    for cls in ("cat", "dog"):
      for name in sorted(os.listdir(os.path.join(root, cls))):
        if name.endswith(".jpg") and os.path.getsize(os.path.join(root, cls, name)) < 2**20:
          zf.write(os.path.join(root, cls, name), f"{cls}/{name}")
    if big_member:  # inflates to 512 MiB
      with zf.open("cat/inflates.jpg", "w", force_zip64=True) as member:
        member.write(b"\xff\xd8\xff\xe0")
        zero = bytes(2**24)
        for _ in range(BOMB // len(zero)):
          member.write(zero)


def big_png(side: int = PIXEL_BOMB_SIDE) -> bytes:
  """A valid all-black side x side grayscale PNG, compressed row by row (a few hundred KB)."""
  compress = zlib.compressobj(9)
  row = bytes(1 + side)  # filter byte + pixels
  data = b"".join(compress.compress(row) for _ in range(side)) + compress.flush()
  header = (side.to_bytes(4, "big") * 2) + bytes([8, 0, 0, 0, 0])
  return b"\x89PNG\r\n\x1a\n" + fault_corpus._png_chunk(b"IHDR", header) + \
      fault_corpus._png_chunk(b"IDAT", data) + fault_corpus._png_chunk(b"IEND", b"")


def build(root: str, out: str) -> None:
  config = FolderConfig(name="bombs", root=root, encoding="raw", image_size=16, channels=1,
                        balance="none", split_percent=(100, 0, 0))
  image_folder.Builder(config=config, data_dir=out).download_and_prepare()


def main(workdir: str) -> None:
  clean = os.path.join(workdir, "clean")
  write_folder(clean)
  build(clean, os.path.join(workdir, "out_clean"))
  result = {"clean_mb": peak_mb()}

  bombs = os.path.join(workdir, "bombs")
  shutil.copytree(clean, bombs)
  with open(os.path.join(bombs, "cat", "film.mp4"), "wb") as f:  # 512 MiB, not an image name
    f.truncate(BOMB)
  with open(os.path.join(bombs, "dog", "padded.jpg"), "wb") as f:  # a good JPEG + 512 MiB of zeros
    f.write(jpeg(99))
    f.truncate(f.tell() + BOMB)
  build(bombs, os.path.join(workdir, "out_bombs"))
  result["folder_bombs_mb"] = peak_mb()

  zip_path = os.path.join(workdir, "bombs.zip")
  zip_folder(bombs, zip_path, big_member=True)
  build(zip_path, os.path.join(workdir, "out_zip"))
  result["zip_bomb_mb"] = peak_mb()

  pixels = os.path.join(workdir, "pixels")
  shutil.copytree(clean, pixels)
  with open(os.path.join(pixels, "cat", "bomb_header.jpg"), "wb") as f:
    f.write(fault_corpus._bomb_png(60000))
  with open(os.path.join(pixels, "dog", "big.png"), "wb") as f:
    f.write(big_png())
  build(pixels, os.path.join(workdir, "out_pixels"))
  result["pixel_bombs_mb"] = peak_mb()
  print(json.dumps(result))


if __name__ == "__main__":
  main(sys.argv[1])
