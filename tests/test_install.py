"""A plain (non-editable) `pip install` works from a folder full of decoys: the user's own
`pipeline.py`, `models/` and `builders.py` never shadow the library, and the console
command, the Python imports and `tfds build NAME --imports petpipe.builders` all work."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECOY = 'raise ImportError("the decoy {} was imported instead of petpipe\'s")\n'


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
  out = tmp_path_factory.mktemp("wheel")
  # No build isolation: the test environment already has setuptools and wheel, and the
  # registry need not be reached.
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "-w", str(out), REPO], check=True,
                 capture_output=True, text=True)
  (path,) = glob.glob(str(out / "petpipe-*.whl"))
  return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> dict:
  """A fresh venv holding the wheel; its dependencies come from this environment."""
  venv = tmp_path_factory.mktemp("venv")
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  bin_dir = venv / "bin"
  purelib = subprocess.run([str(bin_dir / "python"), "-c",
                            "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, capture_output=True, text=True).stdout.strip()
  # Dependencies: this environment's packages, after the venv's own (a .pth line adds a
  # folder to sys.path without running the .pth files in it, so this checkout's editable
  # install stays out).
  with open(os.path.join(purelib, "dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  # The venv's own interpreter runs pip (found through that line), so the console script
  # points at the venv.
  subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps",
                  "--no-index", wheel], check=True, capture_output=True, text=True)
  decoys = tmp_path_factory.mktemp("user_repo")
  (decoys / "pipeline.py").write_text(DECOY.format("pipeline.py"))
  (decoys / "builders.py").write_text(DECOY.format("builders.py"))
  (decoys / "models").mkdir()
  (decoys / "models" / "__init__.py").write_text(DECOY.format("models/"))
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return {"bin": bin_dir, "cwd": str(decoys), "env": env}


def _run(installed, *command, timeout=300):
  return subprocess.run([str(c) for c in command], cwd=installed["cwd"], env=installed["env"],
                        capture_output=True, text=True, timeout=timeout)


def test_wheel_installs_one_namespace_without_tests_or_dummy_data(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  packages = {n.split("/")[0] for n in names if not n.startswith("petpipe-")}
  assert packages == {"petpipe"}
  assert not [n for n in names if n.endswith("_test.py") or "dummy_data" in n
              or n.startswith("tests/")]
  for module in ("petpipe/pipeline/input_pipeline.py", "petpipe/builders/folder_builder.py",
                 "petpipe/models/training.py", "petpipe/scripts/train.py", "petpipe/cli.py",
                 "petpipe/builders/pet_images/pet_images_dataset_builder.py",
                 "petpipe/builders/pet_images/README.md"):
    assert module in names, module


@pytest.mark.slow
def test_installed_console_command_lists_and_runs_its_subcommands(installed):
  listing = _run(installed, installed["bin"] / "petpipe", "--help")
  assert listing.returncode == 0, listing.stderr
  for name in ("train", "predict", "verify", "sample-data", "data-service", "benchmark"):
    assert f"  {name} " in listing.stdout, name
  train_help = _run(installed, installed["bin"] / "petpipe", "train", "-h")
  assert train_help.returncode == 0, train_help.stderr
  assert "--shards" in train_help.stdout


@pytest.mark.slow
def test_installed_builders_build_and_import_from_a_folder_of_decoys(installed, tmp_path):
  root = tmp_path / "flowers"
  rng = np.random.default_rng(0)
  for label in ("daisy", "rose"):
    (root / label).mkdir(parents=True)
    for i in range(4):
      pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(root / label / f"{i}.jpg")
  config = {"name": "flowers16", "root": str(root), "encoding": "raw", "image_size": 16,
            "balance": "none"}
  out = tmp_path / "out"
  build = _run(installed, installed["bin"] / "python", "-c",
               "import sys; from tensorflow_datasets.scripts.cli.main import launch_cli; "
               "sys.exit(launch_cli())",
               "build", "image_folder", "--imports", "petpipe.builders",
               "--config", json.dumps(config), "--data_dir", out)
  assert build.returncode == 0, build.stderr[-2000:]
  shards = glob.glob(str(out / "image_folder" / "flowers16" / "1.0.0" / "*.tfrecord*"))
  assert shards
  # The installed library, not the user's modules of the same names, answers imports; the
  # registered builder opens the result by name.
  read = _run(installed, installed["bin"] / "python", "-c",
              "from petpipe import pipeline, models, builders; import petpipe.experiment; "
              "import tensorflow_datasets as tfds; print(pipeline.__file__); "
              f"b = tfds.builder('image_folder/flowers16', data_dir={str(out)!r}); "
              "print(sum(split.num_examples for split in b.info.splits.values()))")
  assert read.returncode == 0, read.stderr[-2000:]
  location, count = read.stdout.strip().splitlines()[-2:]
  assert installed["cwd"] not in location and "site-packages" in location
  assert count == "8"
