"""Validating many files on every core gives, file by file, the verdicts of checking each one
alone: the batched decode in tf.data, the chunking and the warning capture change nothing."""

from __future__ import annotations

import concurrent.futures
import io
import os
import re

import numpy as np
from PIL import Image
import pytest

from petpipe.images import decode
from petpipe.images import pixels as pixels_lib
from petpipe.images import sources
from petpipe.images import transform
from petpipe.images import validate_files
from petpipe.images import validation
from tests import fault_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("corpus") / "root")
  fault_corpus.write_fault_corpus(root, good_per_class=6, copies=2, seed=11)
  source = sources.FolderSource(root, ["a", "b"])
  return source, source.listing().candidates


@pytest.mark.parametrize("workers", [1, 2])
def test_many_files_get_the_verdicts_each_file_gets_alone(corpus, workers, monkeypatch):
  source, candidates = corpus
  limits = validation.Limits(near_duplicates=True)
  alone = [validate_files.check_alone(c, source, limits) for c in candidates]
  # Small chunks: several chunks, one of them with the file libjpeg warns on.
  monkeypatch.setattr(validate_files, "CHUNK_FILES", 7)
  stats = validate_files.Stats()
  together = validate_files.validate(source, candidates, limits, workers=workers,
                                     progress=False, stats=stats)
  assert together == alone
  assert {v.status for v in together} == {"kept", "transcoded", "repaired", "skipped", "ignored"}
  assert stats.files == len(candidates) and 0 < stats.python_seconds < stats.seconds


def test_a_chunk_is_bounded_in_bytes(corpus, monkeypatch):
  source, candidates = corpus
  monkeypatch.setattr(validate_files, "CHUNK_BYTES", 1)  # every image ends its chunk
  for workers in (1, 2):  # each reader may finish the file it holds: `workers` at most
    with concurrent.futures.ThreadPoolExecutor(workers) as readers:
      chunk = validate_files._prepare_chunk(
          source, validate_files._Shared(iter(candidates)), validation.Limits(), readers,
          workers, validate_files.Stats())
    assert 1 <= sum(isinstance(p, validation.Pending) for p in chunk) <= workers


@pytest.mark.parametrize("channels", [1, 3])
def test_validating_by_the_stored_transform_gives_the_same_verdicts_and_the_pixels_prediction_computes(
    corpus, channels, monkeypatch):
  source, candidates = corpus
  monkeypatch.setattr(validate_files, "CHUNK_FILES", 7)  # several chunks, one that warns
  limits = validation.Limits()
  preprocessing = transform.Preprocessing((24, 20), channels)
  plain = validate_files.validate(source, candidates, limits, workers=2, progress=False)
  with_pixels = list(validate_files.iter_validated_pixels(
      source, candidates, limits, preprocessing, workers=2, progress=False))
  assert [v for v, _ in with_pixels] == plain
  given = [(v, p) for v, p in with_pixels if p is not None]
  assert all(v.usable for v, _ in given)
  # Every usable file TensorFlow decodes comes with pixels; Pillow's come without.
  assert {v.path for v, _ in given} == {v.path for v in plain
                                        if v.usable and v.decoder != decode.PILLOW}
  for v, pixels in given:
    data = source.read(v.path)
    expected = pixels_lib.to_uint8(transform.transform_bytes(data, preprocessing,
                                                             decoder=v.decoder)).numpy()
    assert pixels.dtype == np.uint8 and pixels.shape == (24, 20, channels)
    np.testing.assert_array_equal(pixels, expected, err_msg=v.path)


def test_near_duplicate_checks_keep_their_own_decode_and_give_no_pixels(corpus):
  source, candidates = corpus
  limits = validation.Limits(near_duplicates=True)
  found = list(validate_files.iter_validated_pixels(
      source, candidates, limits, transform.Preprocessing((16, 16), 1), progress=False))
  assert [v for v, _ in found] == validate_files.validate(source, candidates, limits,
                                                          progress=False)
  assert all(p is None for _, p in found)


def _jpeg(rng, mode: str = "RGB", junk: int = 0) -> bytes:
  """A small JPEG; with `junk`, that many bytes stuffed before its end marker, which makes
  libjpeg warn "Corrupt JPEG data: N extraneous bytes before marker 0xd9" (it decodes)."""
  pixels = rng.integers(0, 256, (24, 32, len(mode)), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels, mode).save(buf, "JPEG", quality=90)
  data = buf.getvalue()
  return data[:-2] + b"\xff\x00" * (junk // 2) + data[-2:] if junk else data


def _folder_with_warnings(root, rng, files: int, junk: dict) -> sources.FolderSource:
  """`files` JPEGs in root/a, named 000.jpg...; file i gets junk[i] bytes (a CMYK JPEG
  when junk[i] is negative). Files with the same junk are copies: they warn alike."""
  os.makedirs(root / "a")
  warned = {extra: _jpeg(rng, "CMYK", -extra) if extra < 0 else _jpeg(rng, junk=extra)
            for extra in sorted(set(junk.values()))}
  for i in range(files):
    data = warned[junk[i]] if i in junk else _jpeg(rng)
    (root / "a" / f"{i:03d}.jpg").write_bytes(data)
  return sources.FolderSource(str(root), ["a"])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_file_libjpeg_warns_on_is_found_however_many_share_a_chunk_and_a_message(
    tmp_path, workers):
  rng = np.random.default_rng(5)
  positions = sorted(int(i) for i in rng.choice(np.arange(1, 40), 7, replace=False))
  # Two files warn each its own way, a CMYK JPEG (transcoded anyway) warns too, and the
  # last four warn alike: finding one of those is not finding them all.
  junk = dict(zip(positions, [10, 60, -24, 24, 24, 24, 24]))
  source = _folder_with_warnings(tmp_path / "root", rng, 40, junk)
  verdicts = validate_files.validate(source, source.listing().candidates, workers=workers,
                                     progress=False)
  status = {os.path.basename(v.path): (v.status, v.reason) for v in verdicts}
  for i in range(40):
    name, extra = f"{i:03d}.jpg", junk.get(i, 0)
    if extra > 0:
      assert status[name][0] == "repaired", name
      assert re.fullmatch(r"libjpeg warning: Corrupt JPEG data: \d+ extraneous bytes before "
                          r"marker 0xd9", status[name][1])
    elif extra < 0:
      assert status[name] == ("transcoded", "colour space: CMYK")
    else:
      assert status[name] == ("kept", ""), name


@pytest.mark.parametrize("workers", [1, 2])
def test_the_search_for_a_warning_stops_once_every_warning_has_its_file(
    tmp_path, workers, monkeypatch):
  source = _folder_with_warnings(tmp_path / "root", np.random.default_rng(6), 40, {0: 24})
  decoded = []
  search_decode = validate_files._recheck_decode
  monkeypatch.setattr(validate_files, "_recheck_decode",
                      lambda data: decoded.append(data) or search_decode(data))
  verdicts = validate_files.validate(source, source.listing().candidates, workers=workers,
                                     progress=False)
  assert [v.status for v in verdicts] == ["repaired"] + ["kept"] * 39
  # The first file warned: its group, then halves of it, and none of the 39 after it.
  assert len(decoded) <= 2 * workers
