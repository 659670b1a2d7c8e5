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


# Random sources whose draws differ from run to run unless given a seed.
_SEEDED_CONSTRUCTORS = {"default_rng", "RandomState", "Random", "SeedSequence"}
_NUMPY_SEEDED_API = _SEEDED_CONSTRUCTORS | {"Generator", "PCG64", "Philox", "BitGenerator"}
_TF_RANDOM_OPS = {"uniform", "normal", "truncated_normal", "shuffle", "categorical", "gamma",
                  "poisson"}
_ALWAYS_RANDOM = {("os", "urandom"), ("uuid", "uuid1"), ("uuid", "uuid4"), ("secrets", "token_bytes"),
                  ("secrets", "token_hex"), ("secrets", "randbelow")}


def _dotted(node) -> str:
  """"np.random.default_rng" for the expression `np.random.default_rng`, "" if not a name."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not isinstance(node, ast.Name):
    return ""
  return ".".join([node.id, *reversed(parts)])


def _unrepeatable_calls(path: str) -> list[str]:
  """Calls in the file whose result changes from one run (or process) to the next."""
  found = []
  calls = [n for n in ast.walk(ast.parse(open(path, encoding="utf-8").read())) if isinstance(n, ast.Call)]
  for node in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
    name = _dotted(node.func)
    parts = name.split(".")
    seeded = bool(node.args) or any(k.arg == "seed" for k in node.keywords)
    wrong = (
        name == "hash"  # Python's string hash changes with every process (PYTHONHASHSEED)
        or tuple(parts[-2:]) in _ALWAYS_RANDOM
        or (parts[-1] in _SEEDED_CONSTRUCTORS and not seeded)
        # NumPy's and Python's module-level draws come from a global, unseeded state.
        or (len(parts) == 3 and parts[:2] in (["np", "random"], ["numpy", "random"])
            and parts[2] not in _NUMPY_SEEDED_API)
        or (len(parts) == 2 and parts[0] == "random" and parts[1] not in _SEEDED_CONSTRUCTORS)
        or (len(parts) == 3 and parts[:2] == ["tf", "random"] and parts[2] in _TF_RANDOM_OPS
            and not any(k.arg == "seed" for k in node.keywords))
    )
    if wrong:
      found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {name}(...)")
  return found


def _test_files() -> list[str]:
  return sorted(glob.glob(os.path.join(REPO, "tests", "*.py"))
                + glob.glob(os.path.join(REPO, "builders", "**", "*_test.py"), recursive=True))


def test_tests_and_their_helpers_use_no_builtin_hash_and_no_unseeded_random_source():
  found = [call for path in _test_files() for call in _unrepeatable_calls(path)]
  assert found == []


def test_the_determinism_check_recognises_what_it_forbids(tmp_path):
  path = tmp_path / "example.py"
  path.write_text(
      "import numpy as np, os, random, uuid\n"
      "a = hash(('cat', 1)) % 1000\n"
      "b = np.random.default_rng()\n"
      "c = np.random.randint(0, 9)\n"
      "d = random.choice([1, 2])\n"
      "e = os.urandom(8) + uuid.uuid4().bytes\n"
      "f = np.random.default_rng(0).integers(9) + random.Random(1).random()\n"
      "g = np.random.default_rng(seed=3)\n")
  assert [line.split(": ")[1] for line in _unrepeatable_calls(str(path))] == [
      "hash(...)", "np.random.default_rng(...)", "np.random.randint(...)", "random.choice(...)",
      "os.urandom(...)", "uuid.uuid4(...)"]
