"""The pixels validation made, kept on local disk until the writer stores them.

A raw build (`gray100`, `rgb160`, JSON raw configs) validates each file by decoding it with
the one transform at the stored size (`validate_files.iter_validated_pixels`), so the writer
takes those pixels instead of reading and decoding the file a second time. They wait here,
in one temporary file of fixed-size slots (the stored size of every usable file: what the
records will hold), found by the file's ordinal in the listing; memory holds one slot
number (8 bytes) a file. The file is unlinked at once (nothing is left behind by a killed
build) and sits in the folder the builder gives, the output's own disk. A file without
pixels (a reused verdict, a file Pillow reads) is read and decoded by the writer as before.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Optional

import numpy as np


class PixelSpill:
  """Slots of uint8 pixels of one shape, written in any order, read by ordinal."""

  def __init__(self, shape: tuple[int, int, int], files: int, folder: Optional[str] = None):
    self.shape = tuple(shape)
    self._bytes = int(np.prod(self.shape))
    self._file = tempfile.TemporaryFile(prefix="petpipe_pixels_", dir=folder)
    self._slots = np.full(files, -1, np.int64)
    self._written = 0
    self._lock = threading.Lock()

  def add(self, ordinal: int, pixels: np.ndarray) -> None:
    """Keeps the pixels of the file at `ordinal`."""
    if pixels.shape != self.shape or pixels.dtype != np.uint8:
      raise ValueError(f"pixels must be uint8 of shape {self.shape}. "
                       f"Received: {pixels.dtype} {pixels.shape}")
    with self._lock:
      self._file.write(np.ascontiguousarray(pixels).tobytes())
      self._slots[ordinal] = self._written
      self._written += 1

  def get(self, ordinal: int) -> Optional[np.ndarray]:
    """The pixels of the file at `ordinal`, or None if it has none here."""
    slot = int(self._slots[ordinal])
    if slot < 0:
      return None
    with self._lock:
      self._file.flush()
    data = os.pread(self._file.fileno(), self._bytes, slot * self._bytes)
    return np.frombuffer(data, np.uint8).reshape(self.shape)

  def close(self) -> None:
    self._file.close()
