"""A mutation check: plants known bugs one at a time and reports which tests catch each.

    .venv/bin/python tests/mutations.py              # every mutation (~15 minutes on 2 cores)
    .venv/bin/python tests/mutations.py --only split_by_python_hash,uint8_truncation
    .venv/bin/python tests/mutations.py --list

Each mutation replaces one exact piece of library source with a buggy version, runs the
tests meant to catch it (with the project's pytest settings), restores the file and prints
which of those tests failed. A bug counts as caught when at least two tests fail on it;
the tests are first run once unmutated, and must all pass there. The exit status is 1 when
any mutation is caught by fewer than two tests, 2 when the table no longer fits the source.

The source is edited in place, since the editable install imports this checkout. The
original bytes are kept beside the file as `<file>.mutation-backup` while it is mutated and
put back afterwards, also on Ctrl-C or SIGTERM; a backup left by a killed run (kill -9) is
restored when the check starts again.

When source moves, edit the table: a mutation whose text is not found (or found more than
once) fails at once, naming the file. Not collected by pytest (its name does not match
`test_*.py`); not part of the normal suite or CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKUP = ".mutation-backup"

RESUME_TESTS = (
    "tests/test_train.py::test_a_run_killed_mid_epoch_resumes_its_augmentation_layers_random_state",
    "tests/test_train.py::test_a_run_stopped_between_saves_trains_each_unsaved_batch_once_more_and_no_other",
)
GOLDEN_SPLITS = "tests/test_builders.py -k 'golden or balanced_build'"
EXACT_BALANCE = (
    "tests/test_builders.py::test_balancing_cuts_each_split_to_its_smallest_class_and_records_the_counts_before",
    "tests/test_label_files.py::test_labelled_build_splits_and_balances_as_a_folder_build",
)
PIXEL_REFERENCES = "tests/test_transform.py -k 'hand_computed or pillows or own_scale'"


@dataclasses.dataclass(frozen=True)
class Mutation:
  """One planted bug.

  Attributes:
    name: what the bug is, as one identifier.
    file: the source file, relative to the repository.
    old: the exact text replaced (must occur once in `file`).
    new: the buggy text.
    tests: pytest arguments, each a node id or a path with `-k EXPR`: the tests meant to
      catch it. Node ids run together in one pytest process, each `-k` selection in its own.
  """

  name: str
  file: str
  old: str
  new: str
  tests: tuple[str, ...]


MUTATIONS = (
    # The planted bugs ---------------------------------------------------------------
    Mutation(
        "balance_keeps_one_fewer", "builders/local_plan.py",
        "      target = min(before[s, c] for c in present)\n",
        "      target = max(min(before[s, c] for c in present) - 1, 0)\n",
        (GOLDEN_SPLITS, *EXACT_BALANCE)),
    Mutation(
        "split_by_python_hash", "pipeline/file_splits.py",
        '  digest = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()\n'
        '  return int.from_bytes(digest[:8], "big") / 2**64\n',
        '  return (hash(f"{salt}:{key}") % 2**64) / 2**64  # differs from process to process\n',
        (GOLDEN_SPLITS, *EXACT_BALANCE)),
    Mutation(
        "uint8_truncation", "images/pixels.py",
        "    return tf.saturate_cast(tf.math.round(images), dtype)\n",
        "    return tf.saturate_cast(images, dtype)\n",
        (PIXEL_REFERENCES,)),
    Mutation(
        "resume_loses_augmentation_state", "models/training.py",
        "      for variable, value in zip(determinism.seed_states(self.model), self._state[\"seed_states\"],\n"
        "                                 strict=True):\n"
        "        variable.assign(np.asarray(value, dtype=variable.dtype))\n",
        "      determinism.reseed_layers(self.model, self._seed, epoch)  # back to the epoch's start\n",
        RESUME_TESTS),
    Mutation(
        "resume_trains_a_batch_twice", "models/training.py",
        "    rest = train(determinism.derive(seed, start), step)\n",
        "    rest = train(determinism.derive(seed, start), step - 1)\n",
        RESUME_TESTS),
    # More, in validation, balancing, splitting, the transform and resume ---------------------
    Mutation(
        "max_pixels_unchecked", "images/validation.py",
        "  if width * height > limits.max_pixels:\n",
        "  if False and width * height > limits.max_pixels:\n",
        ("tests/test_build_safety.py -k 'max_pixels or memory_bombs'",)),
    Mutation(
        "libjpeg_warnings_ignored", "images/validate_files.py",
        "  if warn and v.status == validation.KEPT:\n",
        "  if False and warn and v.status == validation.KEPT:\n",
        ("tests/test_fault_corpus.py", "tests/test_builders.py -k 'extraneous or anomaly_kind'")),
    Mutation(
        "balance_by_path_order", "builders/local_plan.py",
        '          fractions[i] = splits_lib.stable_fraction(v.path, "balance")\n',
        "          fractions[i] = i  # the listing's (path) order\n",
        (GOLDEN_SPLITS, *EXACT_BALANCE)),
    Mutation(
        "duplicates_split_apart", "builders/local_plan.py",
        "        split = layouts.split_of_path(self.source, v.path, config.percentages, self.split_key.get(i))\n",
        "        split = layouts.split_of_path(self.source, v.path, config.percentages)\n",
        ("tests/test_build_safety.py -k exact_duplicates", "tests/test_builders.py -k copies_under")),
    Mutation(
        "split_by_file_name_alone", "builders/layouts.py",
        "  return splits_lib.split_of(key or path, percent)\n",
        '  return splits_lib.split_of((key or path).rsplit("/", 1)[-1], percent)  # Cat/1.jpg with Dog/1.jpg\n',
        (GOLDEN_SPLITS, *EXACT_BALANCE)),
    Mutation(
        "luma_weights_swapped", "images/pixels.py",
        "LUMA_WEIGHTS = (0.299, 0.587, 0.114)\n",
        "LUMA_WEIGHTS = (0.114, 0.587, 0.299)\n",
        (PIXEL_REFERENCES,)),
    Mutation(
        "resize_antialiased", "images/transform.py",
        "    resized = tf.image.resize(images, size, method=method, antialias=antialias)\n",
        "    resized = tf.image.resize(images, size, method=method, antialias=True)\n",
        (PIXEL_REFERENCES,)),
    Mutation(
        "dct_scale_one_step_too_small", "images/decode.py",
        "    if -(-height // r) >= size[0] and -(-width // r) >= size[1]:\n",
        "    if -(-height // r) >= size[0] // 2 and -(-width // r) >= size[1] // 2:\n",
        (PIXEL_REFERENCES,)),
    Mutation(
        "resume_loses_the_epochs_metric_sums", "models/training.py",
        '      for variable, value in zip(self.model.metrics_variables, self._state["metrics"],\n'
        "                                 strict=True):\n"
        "        variable.assign(np.asarray(value, dtype=variable.dtype))\n",
        "      pass  # the interrupted epoch's loss and accuracy sums are not restored\n",
        RESUME_TESTS),
)


class TableError(Exception):
  """The table no longer fits the source."""


def _path(mutation: Mutation) -> str:
  return os.path.join(REPO, mutation.file)


def check_table(mutations) -> None:
  """Every mutation's old text occurs exactly once in its file."""
  for m in mutations:
    if not os.path.exists(_path(m)):
      raise TableError(f"mutation {m.name}: {m.file} does not exist")
    with open(_path(m), encoding="utf-8") as f:
      count = f.read().count(m.old)
    if count == 0:
      raise TableError(f"mutation {m.name}: old text not found in {m.file}")
    if count > 1:
      raise TableError(f"mutation {m.name}: old text found {count} times in {m.file}")


def restore_leftovers() -> None:
  """Puts back any file a killed run left mutated."""
  for folder, _, files in os.walk(REPO):
    if ".venv" in folder.split(os.sep) or ".git" in folder.split(os.sep):
      continue
    for name in files:
      if name.endswith(BACKUP):
        backup = os.path.join(folder, name)
        os.replace(backup, backup[:-len(BACKUP)])
        print(f"restored {os.path.relpath(backup[:-len(BACKUP)], REPO)} from a run that was killed")


class _Mutated:
  """Context: `mutation` applied to its file; the original back on exit (also on Ctrl-C)."""

  def __init__(self, mutation: Mutation):
    self.mutation = mutation

  def __enter__(self):
    path = _path(self.mutation)
    with open(path, "rb") as f:
      self.original = f.read()
    with open(path + BACKUP, "wb") as f:
      f.write(self.original)
    text = self.original.decode("utf-8")
    with open(path, "w", encoding="utf-8") as f:
      f.write(text.replace(self.mutation.old, self.mutation.new, 1))
    return self

  def __exit__(self, *exc):
    path = _path(self.mutation)
    with open(path, "wb") as f:
      f.write(self.original)
    os.remove(path + BACKUP)
    return False


def _outcomes(junit_xml: str) -> dict[str, bool]:
  """test id -> passed, from a JUnit XML report."""
  results = {}
  for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
    module, name = case.get("classname", ""), case.get("name", "")
    test_id = f"{module.replace('.', '/')}.py::{name}"
    if any(child.tag == "skipped" for child in case):
      continue
    results[test_id] = not any(child.tag in ("failure", "error") for child in case)
  return results


def run_tests(targets, log=print) -> dict[str, bool]:
  """Runs the targets (node ids together, each -k selection apart): test id -> passed."""
  node_ids = [t for t in targets if "-k" not in shlex.split(t)]
  runs = [[arg for t in node_ids for arg in shlex.split(t)]] if node_ids else []
  runs += [shlex.split(t) for t in targets if "-k" in shlex.split(t)]
  results = {}
  for args in runs:
    with tempfile.TemporaryDirectory(prefix="petpipe-mutations-") as tmp:
      report = os.path.join(tmp, "report.xml")
      command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 f"--junitxml={report}", *args]
      child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
      try:
        stdout, stderr = child.communicate()
      except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)  # pytest stops its workers and their subprocesses
        try:
          child.wait(timeout=60)
        except subprocess.TimeoutExpired:
          child.kill()
        raise
      if not os.path.exists(report):
        log(stdout[-2000:] + stderr[-2000:])
        raise RuntimeError(f"pytest wrote no report for {' '.join(args)}")
      results.update(_outcomes(report))
  return results


def _interrupt_on_sigterm() -> None:
  def handler(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
  signal.signal(signal.SIGTERM, handler)
  if hasattr(signal, "SIGHUP"):
    signal.signal(signal.SIGHUP, handler)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--only", help="comma-separated mutation names")
  parser.add_argument("--list", action="store_true", help="list the mutations and exit")
  args = parser.parse_args(argv)
  mutations = MUTATIONS
  if args.only:
    names = args.only.split(",")
    unknown = sorted(set(names) - {m.name for m in MUTATIONS})
    if unknown:
      parser.error(f"unknown mutations {unknown}; known: {[m.name for m in MUTATIONS]}")
    mutations = tuple(m for m in MUTATIONS if m.name in names)
  if args.list:
    for m in mutations:
      print(f"{m.name:<38} {m.file}")
    return 0
  _interrupt_on_sigterm()
  try:
    return _check(mutations)
  except KeyboardInterrupt:
    print("interrupted: every mutated file is restored", file=sys.stderr)
    return 130


def _check(mutations) -> int:
  restore_leftovers()
  try:
    check_table(mutations)
  except TableError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  targets = sorted({t for m in mutations for t in m.tests})
  baseline = run_tests(targets)
  failing = sorted(t for t, ok in baseline.items() if not ok)
  print(f"unmutated: {len(baseline)} tests, {len(baseline) - len(failing)} pass")
  if failing or not baseline:
    print("error: the tests must pass before mutating: " + ", ".join(failing), file=sys.stderr)
    return 2

  weak = []
  for index, m in enumerate(mutations, 1):
    with _Mutated(m):
      results = run_tests(m.tests)
    caught = sorted(t for t, ok in results.items() if not ok)
    verdict = "caught" if len(caught) >= 2 else "NOT caught by 2 tests"
    print(f"[{index}/{len(mutations)}] {m.name} ({m.file}): {verdict}: "
          f"{len(caught)} of {len(results)} tests fail", flush=True)
    for test in caught:
      print(f"      {test}")
    if len(caught) < 2:
      weak.append(m.name)
  print(f"{len(mutations) - len(weak)} of {len(mutations)} mutations caught by at least 2 tests"
        + (f"; not: {', '.join(weak)}" if weak else ""))
  return 1 if weak else 0


if __name__ == "__main__":
  sys.exit(main())
