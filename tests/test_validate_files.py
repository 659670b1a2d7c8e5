"""Validating many files on every core gives, file by file, the verdicts of checking each one
alone: the batched decode in tf.data, the chunking and the warning capture change nothing."""

from __future__ import annotations

import concurrent.futures

import numpy as np
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
