"""This thread's CPU time in calls that release the GIL (file reads, hashing).

Validation subtracts it from a thread's CPU time to tell the Python time that holds the
GIL: that time, not the decoding, bounds how far more cores speed validation up.
"""

from __future__ import annotations

import threading

_RELEASED = threading.local()


def released_seconds() -> float:
  """CPU seconds this thread has spent in calls that release the GIL, as counted here."""
  return getattr(_RELEASED, "seconds", 0.0)


def add_released(seconds: float) -> None:
  _RELEASED.seconds = released_seconds() + seconds
