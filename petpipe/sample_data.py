"""Synthetic PetImages-shaped data: learnable cat/dog pictures plus the real set's anomalies.

Microsoft's PetImages (`kagglecatsanddogs_5340.zip`) holds `PetImages/Cat/<N>.jpg` and
`PetImages/Dog/<N>.jpg`, and some of its "JPEGs" are empty, truncated, other formats, CMYK,
or carry extraneous bytes. This module writes a small stand-in with the same layout and the
same kinds of broken files, so builders and pipelines can be tested without the download.

The pictures are simple but learnable, also at 32x32 grayscale:

* a cat is a round bright face with two pointed ears on top, on a light background with
  fine diagonal stripes;
* a dog is a wider face with two long floppy ears down its sides, on a darker plain
  background.

Position, scale and colours vary and mild noise is added. Output is deterministic: the
same arguments and seed give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zipfile
import zlib
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw

CLASS_NAMES = ("Cat", "Dog")
ARCHIVE_NAME = "kagglecatsanddogs_5340.zip"
ROOT_NAME = "PetImages"
THUMBS_DB = "Thumbs.db"

# What a validating builder is expected to do with each anomaly kind.
KEPT = "kept"
TRANSCODED = "transcoded"
REPAIRED = "repaired"
SKIPPED = "skipped"
IGNORED = "ignored"

ANOMALY_KINDS = {
    "zero_byte": SKIPPED,
    "truncated": SKIPPED,
    "junk": SKIPPED,
    "png_as_jpg": TRANSCODED,
    "gif_as_jpg": TRANSCODED,
    "bmp_as_jpg": TRANSCODED,
    "webp_as_jpg": TRANSCODED,
    "cmyk": TRANSCODED,
    "exif_only": KEPT,
    "grayscale": KEPT,
    "progressive": KEPT,
    "extraneous_bytes": REPAIRED,
    "bomb": SKIPPED,
    "thumbs_db": IGNORED,
}

BOMB_SIDE = 60000
JPEG_QUALITY = 85  # with the noise below, ~32 KB per 250-500 px image, like the real set (~31 KB)
# Fixed member time, so the zip bytes depend only on the content.
ZIP_DATE_TIME = (2017, 2, 7, 0, 0, 0)

_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Thumbs.db is an OLE compound file
_NOISE_SHIFT = 4  # random bytes >> 4: noise spans 16 grey levels (-8..7)


@dataclasses.dataclass(frozen=True)
class Anomaly:
  """One deliberately unusual file.

  Attributes:
    path: relative to the `PetImages` folder, with forward slashes (e.g. "Cat/12.jpg").
    kind: one of `ANOMALY_KINDS`.
    expected: what a builder should do with it: "kept", "transcoded", "repaired",
      "skipped" or "ignored".
  """

  path: str
  kind: str
  expected: str


@dataclasses.dataclass(frozen=True)
class SampleReport:
  """What `write_sample_folder` / `write_sample_zip` wrote.

  Attributes:
    root: the `PetImages` folder (for a zip: the zip path joined with "PetImages").
    counts: class name -> number of good plain images (`0.jpg` .. `<count-1>.jpg`).
    anomalies: the unusual files, numbered after the good images of their class.
  """

  root: str
  counts: dict
  anomalies: Tuple[Anomaly, ...]

  def expected_counts(self) -> dict:
    """Class name -> images a builder should keep (good + kept/transcoded/repaired)."""
    usable = (KEPT, TRANSCODED, REPAIRED)
    counts = dict(self.counts)
    for anomaly in self.anomalies:
      if anomaly.expected in usable:
        name = anomaly.path.split("/")[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_sample_folder(
    root: str,
    per_class: int = 50,
    min_size: int = 250,
    max_size: int = 500,
    seed: int = 0,
    imbalance: float = 1.0,
    anomalies: bool = True,
) -> SampleReport:
  """Writes `root/PetImages/{Cat,Dog}/<N>.jpg`; `imbalance` is dogs per cat.

  Refuses a non-empty `root/PetImages`: files left from another run would change counts.
  """
  _check_args(per_class, min_size, max_size, seed, imbalance)
  pet_dir = os.path.join(root, ROOT_NAME)
  if os.path.isdir(pet_dir) and os.listdir(pet_dir):
    raise FileExistsError(f"{pet_dir} already exists and is not empty.")
  counts = {}
  found = []
  for relpath, data, anomaly in _sample_files(
      per_class, min_size, max_size, seed, imbalance, anomalies):
    _write(os.path.join(pet_dir, *relpath.split("/")), data)
    if anomaly is None:
      name = relpath.split("/")[0]
      counts[name] = counts.get(name, 0) + 1
    else:
      found.append(anomaly)
  for name in CLASS_NAMES:
    os.makedirs(os.path.join(pet_dir, name), exist_ok=True)
    counts.setdefault(name, 0)
  return SampleReport(root=pet_dir, counts=counts, anomalies=tuple(found))


def write_sample_zip(zip_path: str, **kwargs) -> SampleReport:
  """Writes the same content as `write_sample_folder` into a zip shaped like Microsoft's.

  Members are `PetImages/Cat/0.jpg`, ... plus `readme[1].txt` and
  `CDLA-Permissive-2.0.pdf` outside `PetImages/`. Bytes are deterministic for a seed.
  """
  params = dict(per_class=50, min_size=250, max_size=500, seed=0, imbalance=1.0, anomalies=True)
  unknown = set(kwargs) - set(params)
  if unknown:
    raise TypeError(f"Unknown arguments: {sorted(unknown)}")
  params.update(kwargs)
  _check_args(**{k: v for k, v in params.items() if k != "anomalies"})
  parent = os.path.dirname(os.path.abspath(zip_path))
  os.makedirs(parent, exist_ok=True)
  counts = {name: 0 for name in CLASS_NAMES}
  found = []
  with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
    _add_dir(archive, f"{ROOT_NAME}/")
    for name in CLASS_NAMES:
      _add_dir(archive, f"{ROOT_NAME}/{name}/")
    for relpath, data, anomaly in _sample_files(**params):
      _add_file(archive, f"{ROOT_NAME}/{relpath}", data)
      if anomaly is None:
        counts[relpath.split("/")[0]] += 1
      else:
        found.append(anomaly)
    _add_file(archive, "readme[1].txt", _README)
    _add_file(archive, "CDLA-Permissive-2.0.pdf", _LICENSE)
  return SampleReport(
      root=os.path.join(zip_path, ROOT_NAME), counts=counts, anomalies=tuple(found))


def render_picture(animal: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
  """Draws one RGB cat or dog picture of `width` x `height`.

  Background, colours, brightness, position and scale come from the same distributions
  for both animals, with distracting shapes around them, so no threshold on brightness
  or on any one pixel tells them apart: only the shapes (pointed ears and whiskers, or
  floppy ears and a big nose) do.
  """
  if animal not in ("cat", "dog"):
    raise ValueError(f"animal must be 'cat' or 'dog'. Received: animal={animal!r}")
  image = _background(width, height, rng)
  draw = ImageDraw.Draw(image)
  side = min(width, height)
  _draw_distractors(draw, width, height, side, rng)
  if animal == "cat":
    _draw_cat(draw, width, height, side, rng)
  else:
    _draw_dog(draw, width, height, side, rng)
  return _add_noise(image, rng)


def _sample_files(
    per_class: int, min_size: int, max_size: int, seed: int, imbalance: float, anomalies: bool,
) -> Iterator[Tuple[str, bytes, Optional[Anomaly]]]:
  """Yields (path relative to PetImages, bytes, anomaly or None) for the whole sample."""
  counts = _class_counts(per_class, imbalance)
  for name, count in zip(CLASS_NAMES, counts):
    animal = name.lower()
    for index in range(count):
      rng = _rng(seed, name, index)
      image = render_picture(animal, *_size(rng, min_size, max_size), rng)
      yield f"{name}/{index}.jpg", _encode(image, "JPEG"), None
    if anomalies:
      for filename, data, kind in _anomaly_files(
          name, animal, seed, count, tuple(ANOMALY_KINDS), min_size, max_size):
        path = f"{name}/{filename}"
        yield path, data, Anomaly(path=path, kind=kind, expected=ANOMALY_KINDS[kind])


def _anomaly_files(
    class_name: str, animal: str, seed: int, start_index: int, kinds: Sequence[str],
    min_size: int, max_size: int,
) -> Iterator[Tuple[str, bytes, str]]:
  """Yields (file name, bytes, kind) for each anomaly kind, numbered from `start_index`."""
  _check_sizes(min_size, max_size)
  _check_seed(seed)
  unknown = [kind for kind in kinds if kind not in ANOMALY_KINDS]
  if unknown:
    raise ValueError(f"Unknown anomaly kinds: {unknown}. Known: {list(ANOMALY_KINDS)}")
  index = start_index
  for kind in kinds:
    rng = _rng(seed, "anomaly", class_name, kind)
    data = _anomaly_bytes(kind, animal, rng, min_size, max_size)
    if kind == "thumbs_db":
      yield THUMBS_DB, data, kind
    else:
      yield f"{index}.jpg", data, kind
      index += 1


def _anomaly_bytes(
    kind: str, animal: str, rng: np.random.Generator, min_size: int, max_size: int,
) -> bytes:
  if kind == "zero_byte":
    return b""
  if kind == "junk":
    # Leading zero bytes match no image signature (nor Pillow's TGA/ICO guesses).
    return b"\x00\x00\x00\x00" + rng.bytes(int(rng.integers(500, 4000)))
  if kind == "thumbs_db":
    return _OLE_SIGNATURE + rng.bytes(int(rng.integers(1000, 8000)))
  if kind == "bomb":
    return _bomb_png(BOMB_SIDE, BOMB_SIDE)
  image = render_picture(animal, *_size(rng, min_size, max_size), rng)
  if kind == "truncated":
    data = _encode(image, "JPEG")
    return data[:len(data) // 2]
  if kind in ("png_as_jpg", "gif_as_jpg", "bmp_as_jpg", "webp_as_jpg"):
    return _encode(image, kind.split("_")[0].upper())
  if kind == "cmyk":
    return _encode(image.convert("CMYK"), "JPEG")
  if kind == "grayscale":
    return _encode(image.convert("L"), "JPEG")
  if kind == "progressive":
    return _encode(image, "JPEG", progressive=True)
  if kind == "exif_only":
    exif = Image.Exif()
    exif[0x010F] = "PetCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    return _strip_jfif(_encode(image, "JPEG", exif=exif.tobytes()))
  if kind == "extraneous_bytes":
    # libjpeg warns "Corrupt JPEG data: N extraneous bytes before marker 0xd9" but decodes.
    data = _encode(image, "JPEG")
    # Enough stuffed zero bytes that libjpeg always has some left over to warn about.
    return data[:-2] + b"\xff\x00" * int(rng.integers(8, 16)) + data[-2:]
  raise ValueError(f"Unknown anomaly kind: {kind!r}")


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
  """Any grey, tinted, plain or with diagonal stripes (the same for cats and dogs)."""
  grey = int(rng.integers(35, 236))
  tint = rng.integers(-15, 16, size=3)
  colour = tuple(int(c) for c in np.clip(grey + tint, 0, 255))
  image = Image.new("RGB", (width, height), colour)
  if rng.random() < 0.5:
    period = int(rng.integers(4, 10))
    shift = int(rng.integers(25, 50)) * (1 if grey < 128 else -1)
    other = tuple(int(np.clip(c + shift, 0, 255)) for c in colour)
    # Row y of the stripe mask is `line[y:y + width]`, a diagonal pattern.
    line = np.where(np.arange(width + height) % period < period // 2, 255, 0).astype(np.uint8)
    mask = np.lib.stride_tricks.as_strided(line, shape=(height, width), strides=(1, 1))
    image.paste(other, mask=Image.fromarray(np.ascontiguousarray(mask), "L"))
  return image


def _draw_distractors(
    draw: ImageDraw.ImageDraw, width: int, height: int, side: int, rng: np.random.Generator):
  """0-3 random ellipses and triangles of any colour, behind the animal."""
  for _ in range(int(rng.integers(0, 4))):
    r = side * rng.uniform(0.05, 0.2)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    colour = _colour(rng, 0, 255)
    if rng.random() < 0.5:
      draw.ellipse(_box(cx, cy, r, r * rng.uniform(0.5, 1.5)), fill=colour)
    else:
      draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a))
                    for a in rng.uniform(0, 2 * np.pi, size=3)], fill=colour)


def _draw_cat(
    draw: ImageDraw.ImageDraw, width: int, height: int, side: int, rng: np.random.Generator):
  r = side * rng.uniform(0.16, 0.26)
  cx = _uniform(rng, 1.0 * r, width - 1.0 * r)
  cy = _uniform(rng, 1.7 * r, height - 1.05 * r)
  face = _colour(rng, 110, 255)
  outline = _colour(rng, 0, 80)
  line = max(1, round(r / 10))
  for sign in (-1, 1):  # pointed ears on top
    ear = [(cx + sign * 0.95 * r, cy - 0.3 * r), (cx + sign * 0.2 * r, cy - 0.9 * r),
           (cx + sign * 0.8 * r, cy - 1.65 * r)]
    draw.polygon(ear, fill=face, outline=outline, width=line)
  draw.ellipse(_box(cx, cy, r, r), fill=face, outline=outline, width=line)
  for sign in (-1, 1):  # slit eyes and whiskers
    ex = cx + sign * 0.4 * r
    draw.ellipse(_box(ex, cy - 0.2 * r, 0.08 * r, 0.2 * r), fill=outline)
    draw.line([(cx + sign * 0.25 * r, cy + 0.3 * r), (cx + sign * 0.95 * r, cy + 0.2 * r)],
              fill=outline, width=max(1, line // 2))
  nose = [(cx - 0.12 * r, cy + 0.1 * r), (cx + 0.12 * r, cy + 0.1 * r), (cx, cy + 0.25 * r)]
  draw.polygon(nose, fill=(230, 120, 140))


def _draw_dog(
    draw: ImageDraw.ImageDraw, width: int, height: int, side: int, rng: np.random.Generator):
  r = side * rng.uniform(0.16, 0.26)
  rx, ry = 1.3 * r, 0.95 * r
  cx = _uniform(rng, 1.75 * r, width - 1.75 * r)
  cy = _uniform(rng, 1.0 * r, height - 1.45 * r)
  face = _colour(rng, 110, 255)
  ears = tuple(max(c - int(rng.integers(40, 80)), 0) for c in face)
  dark = _colour(rng, 0, 80)
  for sign in (-1, 1):  # long floppy ears down the sides
    draw.ellipse(_box(cx + sign * 1.35 * r, cy + 0.45 * r, 0.38 * r, 1.0 * r), fill=ears)
  draw.ellipse(_box(cx, cy, rx, ry), fill=face)
  for sign in (-1, 1):  # round eyes
    draw.ellipse(_box(cx + sign * 0.5 * r, cy - 0.2 * r, 0.14 * r, 0.14 * r), fill=dark)
  draw.ellipse(_box(cx, cy + 0.3 * r, 0.28 * r, 0.18 * r), fill=dark)  # big nose
  draw.ellipse(_box(cx, cy + 0.7 * r, 0.15 * r, 0.12 * r), fill=(200, 70, 80))  # tongue


def _add_noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
  """Adds mild uniform noise to every channel (a shift and a clipped add: fast)."""
  width, height = image.size
  noise = np.frombuffer(rng.bytes(width * height * 3), np.uint8) >> _NOISE_SHIFT
  noise_image = Image.frombuffer("RGB", (width, height), noise, "raw", "RGB", 0, 1)
  return ImageChops.add(image, noise_image, scale=1.0, offset=-(128 >> _NOISE_SHIFT))


def _bomb_png(width: int, height: int) -> bytes:
  """A tiny PNG whose header declares `width` x `height` 8-bit grayscale pixels."""

  def chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  idat = zlib.compress(b"\x00" * 1024, 9)  # start of the first rows only
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _strip_jfif(data: bytes) -> bytes:
  """Removes a JFIF APP0 segment (`FF E0 <len> JFIF`) that follows the SOI marker."""
  if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
    length = struct.unpack(">H", data[4:6])[0]
    return data[:2] + data[4 + length:]
  return data


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
  if fmt == "JPEG":
    options.setdefault("quality", JPEG_QUALITY)
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **options)
  return buffer.getvalue()


def _write(path: str, data: bytes):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _add_dir(archive: zipfile.ZipFile, name: str):
  info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
  info.external_attr = (0o40755 << 16) | 0x10
  archive.writestr(info, b"")


def _add_file(archive: zipfile.ZipFile, name: str, data: bytes):
  info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
  info.external_attr = 0o644 << 16
  # Deflated like the real archive; level 1 since JPEGs barely shrink.
  archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def _check_args(per_class: int, min_size: int, max_size: int, seed: int, imbalance: float):
  """Raises ValueError before anything is written."""
  _class_counts(per_class, imbalance)
  _check_sizes(min_size, max_size)
  _check_seed(seed)


def _class_counts(per_class: int, imbalance: float) -> Tuple[int, int]:
  if not isinstance(per_class, (int, np.integer)) or per_class <= 0:
    raise ValueError(f"per_class must be a positive integer. Received: per_class={per_class!r}")
  if not imbalance > 0:
    raise ValueError(f"imbalance must be positive. Received: imbalance={imbalance!r}")
  dogs = int(round(per_class * imbalance))
  if dogs <= 0:
    raise ValueError(
        f"imbalance={imbalance!r} with per_class={per_class!r} leaves no dog images."
    )
  return per_class, dogs


def _check_sizes(min_size: int, max_size: int):
  if min_size <= 0 or max_size <= 0:
    raise ValueError(
        f"Image sizes must be positive. Received: min_size={min_size!r}, max_size={max_size!r}"
    )
  if min_size > max_size:
    raise ValueError(
        "min_size must not exceed max_size. "
        f"Received: min_size={min_size!r}, max_size={max_size!r}"
    )


def _check_seed(seed: int):
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")


def _rng(seed: int, *keys) -> np.random.Generator:
  """An independent stream per (seed, keys): each file is the same whatever else is written."""
  entropy = [int(seed)]
  entropy += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
  return np.random.default_rng(entropy)


def _size(rng: np.random.Generator, min_size: int, max_size: int) -> Tuple[int, int]:
  width, height = rng.integers(min_size, max_size + 1, size=2)
  return int(width), int(height)


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
  """Uniform in [low, high], or the midpoint when the range is empty (tiny images)."""
  if high <= low:
    return (low + high) / 2
  return float(rng.uniform(low, high))


def _colour(rng: np.random.Generator, low: int, high: int) -> Tuple[int, int, int]:
  return tuple(int(c) for c in rng.integers(low, high + 1, size=3))


def _box(cx: float, cy: float, rx: float, ry: float) -> Tuple[float, float, float, float]:
  return (cx - rx, cy - ry, cx + rx, cy + ry)


_README = (
    b"Synthetic stand-in for the Microsoft Cats vs. Dogs dataset.\r\n"
    b"PetImages/Cat and PetImages/Dog hold generated pictures, including broken files.\r\n"
)
_LICENSE = b"%PDF-1.4\n% Placeholder for the CDLA-Permissive-2.0 license text.\n%%EOF\n"
