"""What a newcomer reads beside the code: the license, the changelog, the builders' homepage,
and a test run that collects only this project's tests."""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import tensorflow_datasets as tfds

import petpipe
import petpipe.builders  # noqa: F401  (registers the builders)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MD5 of https://www.apache.org/licenses/LICENSE-2.0.txt, the text projects ship verbatim.
APACHE_2_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def test_license_is_the_apache_2_text_setup_cfg_declares():
  with open(os.path.join(ROOT, "LICENSE"), "rb") as f:
    assert hashlib.md5(f.read()).hexdigest() == APACHE_2_MD5
  setup = configparser.ConfigParser()
  setup.read(os.path.join(ROOT, "setup.cfg"))
  assert setup["metadata"]["license"] == "Apache-2.0"
  assert setup["metadata"]["license_files"].split() == ["LICENSE"]


def test_changelog_lists_unreleased_changes_above_the_current_version():
  with open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8") as f:
    text = f.read()
  headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
  assert headings[:2] == ["Unreleased", petpipe.__version__]
  for heading in headings:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    assert section.count("\n- ") >= 1, heading  # a list of changes, not an empty heading


@pytest.mark.parametrize("name", ["pet_images/gray100", "image_folder"])
def test_builders_homepage_is_their_readme_which_is_their_description(name, tmp_path):
  info = tfds.builder(name, data_dir=str(tmp_path)).info
  url = urllib.parse.urlparse(info.homepage)
  assert url.scheme == "file", info.homepage  # not a tensorflow.org page that does not exist
  with urllib.request.urlopen(info.homepage) as page:  # the link works
    readme = page.read().decode("utf-8")
  assert os.path.basename(url.path) == "README.md"
  assert readme.strip() == info.description.strip()


@pytest.mark.slow
def test_pytest_collects_no_tests_of_tensorflow_itself():
  collected = subprocess.run(
      [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", "-p",
       "no:cacheprovider", "builders"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
  tests = [line for line in collected.stdout.splitlines() if "::" in line]
  # TFDS's builder checks, inherited by each builder's test class, are collected...
  for case in ("PetImagesTest", "ImageFolderTest"):
    assert any(t.endswith(f"::{case}::test_download_and_prepare_as_dataset") for t in tests)
  # ...but not TensorFlow's `test_session` context manager, which skipped itself.
  assert not [t for t in tests if t.endswith("::test_session")]
