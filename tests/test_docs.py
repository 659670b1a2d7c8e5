"""The README and docs/ pages say only what exists: their links resolve, every `petpipe`
command line names a real subcommand and real options, and every Python block compiles and
imports only what petpipe has."""

from __future__ import annotations

import ast
import glob
import importlib
import os
import re
import shlex

import click
import pytest

from petpipe import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, REPO)
                             for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]
# Commands that pass their flags on to another parser (tfds build's).
PASSES_FLAGS_ON = ("build",)


def _text(page: str) -> str:
  with open(os.path.join(REPO, page), encoding="utf-8") as f:
    return f.read()


def _anchor(heading: str) -> str:
  """GitHub's anchor of a heading."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _code_lines(text: str) -> list[str]:
  """Shell lines of indented and ```-fenced blocks (continuations joined)."""
  lines, fenced, out = text.splitlines(), False, []
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
      continue
    if (fenced or line.startswith("    ")) and line.strip():
      out.append(line.strip())
  joined, current = [], ""
  for line in out:
    current += line[:-1] + " " if line.endswith("\\") else line
    if not line.endswith("\\"):
      joined.append(current)
      current = ""
  return joined


def _python_blocks(text: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_docs_pages_exist_and_the_readme_is_short():
  assert len(PAGES) >= 8
  assert len(_text("README.md").splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_names_an_existing_file_and_heading(page):
  for target in re.findall(r"\]\(([^)\s]+)\)", _text(page)):
    if "://" in target:
      continue
    path, _, anchor = target.partition("#")
    full = os.path.normpath(os.path.join(REPO, os.path.dirname(page), path)) if path else \
        os.path.join(REPO, page)
    assert os.path.exists(full), f"{page}: {target}"
    if anchor:
      headings = re.findall(r"(?m)^#+ (.*)$", open(full, encoding="utf-8").read())
      assert anchor in {_anchor(h) for h in headings}, f"{page}: {target}"


@pytest.mark.parametrize("page", PAGES)
def test_every_petpipe_command_line_names_a_subcommand_and_its_options(page):
  checked = 0
  for line in _code_lines(_text(page)):
    command_line = line.split(" # ")[0].split("&&")[-1].split("||")[0].split(" | ")[0]
    try:
      words = shlex.split(command_line, comments=True)
    except ValueError:  # a quote closed on a later line of the block
      words = command_line.split()
    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value petpipe ...
      words = words[1:]
    if len(words) < 2 or os.path.basename(words[0]) != "petpipe" or words[1].startswith("-"):
      continue
    name, rest = words[1], words[2:]
    assert name in cli.COMMANDS, f"{page}: {line}"
    checked += 1
    if name in PASSES_FLAGS_ON:
      continue
    command = importlib.import_module(cli.COMMANDS[name][0]).main
    if isinstance(command, click.Group) and rest and rest[0] in command.commands:
      command, rest = command.commands[rest[0]], rest[1:]
    options = {o for p in command.params if isinstance(p, click.Option)
               for o in (*p.opts, *p.secondary_opts)}
    for word in rest:
      if word.startswith("--"):
        assert word.split("=")[0] in options, f"{page}: {word} in {line}"
  if page == "README.md":
    assert checked >= 8


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_compiles_and_imports_what_petpipe_has(page):
  for block in _python_blocks(_text(page)):
    tree = ast.parse(block)
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("petpipe"):
        module = importlib.import_module(node.module)
        for alias in node.names:
          assert hasattr(module, alias.name) or importlib.util.find_spec(
              f"{node.module}.{alias.name}"), f"{page}: from {node.module} import {alias.name}"
      elif isinstance(node, ast.Import):
        for alias in node.names:
          if alias.name.startswith("petpipe"):
            importlib.import_module(alias.name)
