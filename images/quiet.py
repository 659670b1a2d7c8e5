"""libjpeg's warnings, captured and attributed instead of printed.

libjpeg prints "Corrupt JPEG data: N extraneous bytes before marker 0xd9" and its like to
file descriptor 2 while the image still decodes, and TensorFlow logs a line of its own for
each file that fails. Decoding inside `capture()` sends descriptor 2 to a temporary file;
`split_warnings` then tells libjpeg's warnings (which mark a file to re-encode) from
TensorFlow's decoder lines (dropped: the verdict's reason says it) and anything else
(printed back: it is not ours to hide).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

# How libjpeg's warnings (jerror.h) begin, as printed by its default message handler.
_LIBJPEG_PREFIXES = (
    "Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
    "Inconsistent progression sequence", "Warning: ", "Unsupported marker",
    "Application transferred too few scanlines", "Ignoring extra",
)
# TensorFlow's own log lines for a file that failed to decode: the verdict's reason says it.
_DECODER_LOG = re.compile(r"(jpeg_mem|png_io|gif_io|decode_image_op|local_rendezvous)\.cc")
# Descriptor 2 is one per process: one capture at a time.
LOCK = threading.RLock()


class CapturedStderr:
  """What was written to file descriptor 2 during `capture()`; `text` after it ends."""

  def __init__(self):
    self.text = ""
    self._file = None
    self._read = 0

  @contextlib.contextmanager
  def capture(self) -> Iterator["CapturedStderr"]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
      os.dup2(tmp.fileno(), 2)
      self._file = tmp
      try:
        yield self
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        self._file = None
        tmp.seek(0)
        self.text = tmp.read().decode("utf-8", "replace")

  def new_text(self) -> str:
    """What was written since the last call, while capturing (libjpeg writes to an
    unbuffered stderr: a decode's warnings are there when it returns)."""
    sys.stderr.flush()
    size = os.fstat(self._file.fileno()).st_size
    data = os.pread(self._file.fileno(), size - self._read, self._read)
    self._read += len(data)
    return data.decode("utf-8", "replace")


def is_decoder_warning(line: str) -> bool:
  """Whether a line is one of libjpeg's warnings."""
  return line.startswith(_LIBJPEG_PREFIXES)


def may_become_decoder_warning(start: str) -> bool:
  """Whether a line that begins with `start` may still turn out to be one of libjpeg's."""
  return any(p.startswith(start) or start.startswith(p) for p in _LIBJPEG_PREFIXES)


def split_warnings(text: str) -> tuple[list[str], str]:
  """(libjpeg's warning lines, other lines that are not the decoders' own) of `text`."""
  warn, other = [], []
  for line in text.splitlines():
    if is_decoder_warning(line):
      warn.append(line)
    elif line.strip() and not _DECODER_LOG.search(line):
      other.append(line)
  return warn, "\n".join(other)


@contextlib.contextmanager
def decoding() -> Iterator[CapturedStderr]:
  """Decodes inside it print nothing of libjpeg's or of the decoders' logs; other output
  is printed back afterwards. Yields the capture (its `text` is set on exit)."""
  with LOCK:
    captured = CapturedStderr()
    try:
      with captured.capture():
        yield captured
    finally:
      _, other = split_warnings(captured.text)
      if other:
        print(other, file=sys.stderr)
