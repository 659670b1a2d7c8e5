"""The shape of the library: layers point one way (images <- pipeline <- builders; models
alone), private Keras and TFDS internals stay in one module each, one of each thing that
finds, checks or decodes an image file, entry points stay thin, and both ways of naming a
builder coexist in one process."""

from __future__ import annotations

import ast
import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("images", "pipeline", "builders", "models")


def _imports(path: str) -> list[tuple[str, str]]:
  """(imported module, enclosing function or "") for every import in the file."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  found = []

  def visit(node, function):
    for child in ast.iter_child_nodes(node):
      inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
          else function
      if isinstance(child, ast.Import):
        found.extend((alias.name, function) for alias in child.names)
      elif isinstance(child, ast.ImportFrom) and child.module:
        found.extend((f"{child.module}.{alias.name}", function) for alias in child.names)
      visit(child, inner)

  visit(tree, "")
  return found


def _library_files(layer: str) -> list[str]:
  files = glob.glob(os.path.join(REPO, layer, "**", "*.py"), recursive=True)
  return [f for f in files if not f.endswith("_test.py")]


def _uses(module: str, layer: str) -> bool:
  return module == f"petpipe.{layer}" or module.startswith(f"petpipe.{layer}.")


# The modules of the `petpipe` package itself (entry points, whole runs, prediction, samples).
TOP = ("scripts", "experiment", "prediction", "show", "cli", "benchmarks", "sample_data")


@pytest.mark.parametrize("layer, forbidden", [
    ("images", ("pipeline", "builders", "models") + TOP),
    ("pipeline", ("builders", "models") + TOP),
    ("builders", ("models",) + TOP),
    ("models", ("images", "pipeline", "builders") + TOP),
])
def test_lower_layers_never_import_upper_ones_not_even_inside_a_function(layer, forbidden):
  wrong = [(os.path.relpath(f, REPO), module, function) for f in _library_files(layer)
           for module, function in _imports(f) if any(_uses(module, other) for other in forbidden)]
  assert wrong == []


def test_only_the_tfds_compat_module_imports_tfds_internals():
  files = [f for layer in (*LAYERS, "scripts", "petpipe") for f in _library_files(layer)]
  internal = ("tensorflow_datasets.core", "tensorflow_datasets.proto")
  users = {os.path.relpath(f, REPO) for f in files for module, _ in _imports(f)
           if module.startswith(internal)}
  assert users == {"builders/tfds_compat.py"}


def _library_sources(layers=(*LAYERS, "scripts", "petpipe")) -> dict[str, str]:
  files = [f for layer in layers for f in _library_files(layer)]
  return {os.path.relpath(f, REPO): open(f, encoding="utf-8").read() for f in files}


# `models` imports nothing of the project, and Keras drops the cause of an error raised in a
# callback (`raise ... from None` in its traceback filter): where it wraps an OS error while
# saving, it names the OS's reason itself.
ABOVE_MODELS = ("images", "pipeline", "builders", "scripts", "petpipe")


@pytest.mark.parametrize("what, pattern, owner", [
    ("an image extension list", r"""["']\.jpe?g["'][^\n]*["']\.png["']""", "images/files.py"),
    ("a Pillow decode", r"Image\.open\(io\.BytesIO", "images/decode.py"),
    ("a header reader", r"def (parse|read)\w*\(.*\) -> (headers\.)?ImageHeader", "images/headers.py"),
    ("an error-to-line function", r"splitlines\(\)\[0\]|\[Op:|strerror or ", "images/errors.py"),
])
def test_one_of_each_thing_that_finds_checks_or_decodes_an_image_file(what, pattern, owner):
  owners = {path for path, text in _library_sources(ABOVE_MODELS).items()
            if re.search(pattern, text)}
  assert owners <= {owner}, f"{what} outside {owner}: {sorted(owners - {owner})}"


def test_no_module_changes_the_process_when_imported():
  # warnings filters, logging levels or TensorFlow's global state belong to the user's
  # process: a call that needs them changes them and restores them.
  changes = r"^(warnings\.(simplefilter|filterwarnings)|tf\.get_logger\(\)\.setLevel|" \
            r"logging\.set_verbosity|tf\.config\.\w+\()"
  found = [path for path, text in _library_sources().items()
           if re.search(changes, text, re.MULTILINE)]
  assert found == []


def test_only_the_keras_compat_module_imports_private_keras():
  files = [f for layer in (*LAYERS, "scripts", "petpipe") for f in _library_files(layer)]
  private = {os.path.relpath(f, REPO) for f in files for module, _ in _imports(f)
             if module == "keras.src" or module.startswith("keras.src.")}
  assert private == {"models/keras_compat.py"}


def test_entry_points_are_under_200_lines():
  long = {os.path.basename(f): n for f in glob.glob(os.path.join(REPO, "scripts", "*.py"))
          if (n := sum(1 for _ in open(f, encoding="utf-8"))) > 200}
  assert long == {}


def test_builder_by_path_and_by_import_coexist_in_one_process():
  # `tfds build builders/pet_images` imports the file as `pet_images.pet_images_dataset_builder`
  # (TFDS skips registering it); `import petpipe.builders` registers the installed class.
  code = f"""
import sys
import tensorflow_datasets as tfds
import petpipe.builders
from petpipe.builders.pet_images import pet_images_dataset_builder as installed
with tfds.core.utils.add_sys_path({os.path.join(REPO, "builders")!r}):
  by_path = tfds.core.community.builder_cls_from_module("pet_images.pet_images_dataset_builder")
assert by_path.name == "pet_images" and by_path is not installed.Builder, by_path
assert tfds.builder_cls("pet_images") is installed.Builder
assert tfds.builder_cls("image_folder").__module__.startswith("petpipe.builders.")
print("ok")
"""
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")
