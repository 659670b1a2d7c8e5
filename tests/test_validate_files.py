"""Validating many files on every core gives, file by file, the verdicts of checking each one
alone: the batched decode in tf.data, the chunking and the warning capture change nothing."""

from __future__ import annotations

import concurrent.futures

import pytest

from petpipe.images import sources
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
