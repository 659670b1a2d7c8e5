"""A natural-picture twin of a generated sample folder, for benchmarks.

The generated sample JPEGs are mostly noise, so entropy decoding dominates their decode
and DCT scaling gains little on them. Real photos are smoother. This module rewrites
every good picture of a sample folder as a PetImages-sized (~400x350, ~30 KB) random
crop, scale, flip and colour shift of a real photograph that ships with matplotlib
(`mpl-data/sample_data/grace_hopper.jpg`), under the same file name, and copies the
broken files as they are: same count, same names, same broken files.

    from petpipe.benchmarks import natural_pictures
    natural_pictures.write_natural_folder("sample/PetImages", "natural/PetImages",
                                          broken={"Cat/3.jpg", ...})
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import zlib
from typing import Collection

import numpy as np
from PIL import Image

# PetImages' pictures average ~400x350 px and ~31 KB.
WIDTHS = (300, 500)
HEIGHTS = (250, 450)
JPEG_QUALITY = 83  # ~30 KB on average at these sizes


def photograph() -> Image.Image:
  """matplotlib's sample photograph of Grace Hopper (512x600 RGB)."""
  import matplotlib

  path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
  with Image.open(path) as image:
    return image.convert("RGB")


def natural_picture(photo: Image.Image, rng: np.random.Generator) -> bytes:
  """One JPEG: a random crop of `photo` at a random scale, maybe flipped, colours shifted."""
  width = int(rng.integers(WIDTHS[0], WIDTHS[1] + 1))
  height = int(rng.integers(HEIGHTS[0], HEIGHTS[1] + 1))
  # The largest window of the output's aspect, shrunk by a random scale, anywhere.
  full_w = min(photo.width, photo.height * width / height)
  scale = rng.uniform(0.4, 1.0)
  crop_w, crop_h = full_w * scale, full_w * scale * height / width
  left = rng.uniform(0, photo.width - crop_w)
  top = rng.uniform(0, photo.height - crop_h)
  image = photo.resize((width, height), Image.BICUBIC,
                       box=(left, top, left + crop_w, top + crop_h))
  if rng.random() < 0.5:
    image = image.transpose(Image.FLIP_LEFT_RIGHT)
  # Colour shift: per-channel gain and offset.
  pixels = np.asarray(image, np.float32)
  pixels = pixels * rng.uniform(0.75, 1.25, 3) + rng.uniform(-25, 25, 3)
  image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
  out = io.BytesIO()
  image.save(out, "JPEG", quality=JPEG_QUALITY)
  return out.getvalue()


def write_natural_folder(source: str, dest: str, broken: Collection[str],
                         seed: int = 0) -> int:
  """Mirrors `source/<class>/<file>` into `dest`: the files named in `broken` (paths
  relative to `source`, "/"-separated) are copied, every other one is replaced by a
  `natural_picture`. Returns the number of pictures written."""
  photo = photograph()
  jobs = []
  for class_name in sorted(os.listdir(source)):
    if not os.path.isdir(os.path.join(source, class_name)):
      continue
    os.makedirs(os.path.join(dest, class_name), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(source, class_name))):
      jobs.append(f"{class_name}/{name}")

  def write(relpath: str) -> int:
    target = os.path.join(dest, *relpath.split("/"))
    if relpath in broken:
      shutil.copyfile(os.path.join(source, *relpath.split("/")), target)
      return 0
    # Seeded by the file's name: the same folder comes out whatever the thread order.
    rng = np.random.default_rng([seed, zlib.crc32(relpath.encode())])
    with open(target, "wb") as f:
      f.write(natural_picture(photo, rng))
    return 1

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    return sum(pool.map(write, jobs))
