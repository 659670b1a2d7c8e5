"""Property: the file validator never crashes or hangs, whatever bytes it is given."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from petpipe.images import validation

_STATUSES = {validation.KEPT, validation.TRANSCODED, validation.REPAIRED, validation.SKIPPED}
_LIMITS = validation.Limits()


def _valid_images() -> list[bytes]:
  rng = np.random.default_rng(0)
  image = Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8))
  out = []
  for fmt, kwargs in [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("WEBP", {})]:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    out.append(buf.getvalue())
  return out


_SEEDS = _valid_images()


@st.composite
def mutated_images(draw):
  data = bytearray(draw(st.sampled_from(_SEEDS)))
  for _ in range(draw(st.integers(1, 8))):
    op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
    pos = draw(st.integers(0, max(0, len(data) - 1)))
    if op == "flip" and data:
      data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "cut":
      del data[pos:]
    elif op == "insert":
      data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif op == "delete":
      del data[pos:pos + draw(st.integers(1, 64))]
  return bytes(data)


_SETTINGS = settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_get_a_verdict_never_an_exception(data):
  verdict = validation.inspect(data, "a/x.jpg", "a", _LIMITS)
  assert verdict.status in _STATUSES
  assert verdict.size_bytes == len(data)
  if verdict.status == validation.SKIPPED:
    assert verdict.reason


@_SETTINGS
@given(mutated_images())
def test_mutated_images_get_a_verdict_never_an_exception(data):
  verdict = validation.inspect(data, "a/x.jpg", "a", _LIMITS)
  assert verdict.status in _STATUSES
  if verdict.status != validation.SKIPPED:
    assert verdict.width > 0 and verdict.height > 0
