"""What the `petpipe` command shows on stderr: its own messages, not TensorFlow's or libjpeg's.

TensorFlow 2.21 prints a dozen start-up lines (oneDNN, CUDA, CPU features) when it is
imported and first lists devices, whatever `TF_CPP_MIN_LOG_LEVEL` says; the command starts
TensorFlow inside a capture and prints back only other lines. `TF_CPP_MIN_LOG_LEVEL=0`
(TensorFlow's "show everything") shows them. While a command trains on image files, the
decodes run in tf.data's threads, where libjpeg prints warnings on files it still decodes
("Corrupt JPEG data: 22 extraneous bytes before marker 0xd9"); `without_decoder_warnings`
drops those lines from the process's stderr for the duration, passing everything else on
as it comes. Both change the process's stderr, so only the command uses them, never the
library.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator

from petpipe.images import quiet

# The lines TensorFlow prints on start-up.
_START_UP = re.compile(
    r"(All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations|"
    r"cudart_stub\.cc|cpu_feature_guard\.cc|^To enable the following instructions|"
    r"cuda_platform\.cc:\d+\] failed call to cuInit|cuda_executor\.cc|cuda_diagnostics\.cc)")


def shows_tensorflow_logs() -> bool:
  return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


def start_tensorflow() -> None:
  """Imports TensorFlow and lists its devices with their start-up lines hidden."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  captured = quiet.CapturedStderr()
  with contextlib.nullcontext() if shows_tensorflow_logs() else captured.capture():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.config.list_physical_devices()
  other = [line for line in captured.text.splitlines() if line.strip()
           and not _START_UP.search(line)]
  if other:
    print("\n".join(other), file=sys.stderr)


@contextlib.contextmanager
def without_decoder_warnings() -> Iterator[None]:
  """File descriptor 2 goes through a filter that drops libjpeg's warning lines."""
  if shows_tensorflow_logs():
    yield
    return
  sys.stderr.flush()
  original = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)
  forward = threading.Thread(target=_forward, args=(read_end, original), daemon=True)
  forward.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(original, 2)  # the pipe's last writer is gone: the thread reads to its end
    forward.join(timeout=5)
    os.close(original)


def _forward(read_end: int, out: int) -> None:
  """Copies `read_end` to `out` as it arrives, line by line dropping libjpeg's warnings. A
  line is held only while it may still become one (progress bars redrawn with `\\r` pass
  on at once)."""
  line = b""  # the current line, while it may still be a warning
  passing = False  # the current line is not a warning: bytes go straight on
  with os.fdopen(read_end, "rb", buffering=0) as pipe:
    while chunk := pipe.read(65536):
      out_bytes = bytearray()
      for part in re.split(rb"([\r\n])", chunk):
        if part in (b"\n", b"\r"):  # a line ends (a progress bar redraws after \r)
          if passing or not quiet.is_decoder_warning(line.decode("utf-8", "replace")):
            out_bytes += line + part
          line, passing = b"", False
        elif passing:
          out_bytes += part
        else:
          line += part
          text = line.decode("utf-8", "replace")
          if not quiet.may_become_decoder_warning(text):
            out_bytes += line
            line, passing = b"", True
      if out_bytes:
        os.write(out, bytes(out_bytes))
    if line and not quiet.is_decoder_warning(line.decode("utf-8", "replace")):
      os.write(out, line)
