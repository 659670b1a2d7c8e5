"""Pytest set-up for the whole repository: quiet TensorFlow, no network look-ups, only our tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


def pytest_collection_modifyitems(config, items):
  """Collects only this project's tests: `tf.test.TestCase` (which TFDS's
  `DatasetBuilderTestCase` extends) has a context manager named `test_session`, which pytest
  takes for a test of every such class and TensorFlow then skips ("Not a test.")."""
  def ours(item) -> bool:
    return not getattr(getattr(item, "obj", None), "__module__", "").startswith("tensorflow.")

  theirs = [item for item in items if not ours(item)]
  if theirs:
    items[:] = [item for item in items if ours(item)]
    config.hook.pytest_deselected(items=theirs)  # counted as such, not silently lost
