"""Pytest set-up for the whole repository: quiet TensorFlow, no network look-ups."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
