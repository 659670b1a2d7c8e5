"""The quality gate every build passes: enough classes, few enough unusable files, no class
split in two by the case of its name.

A build that would train nothing useful fails here, early, with one line saying what was
found and what to do, instead of writing a one-class dataset or one made of the few files
that survived a wrong root.
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import tensorflow as tf

from petpipe.builders import card as card_lib
from petpipe.images import sources as sources_lib
from petpipe.images import validation

DEFAULT_MIN_CLASSES = 2
DEFAULT_MAX_SKIPPED_FRACTION = 0.5
_REASONS_SHOWN = 3


def check_classes(config, source, names: Sequence[str], label_of_dir: dict, listing) -> None:
  """Before validation: class names that differ only in case, and fewer classes than
  `config.min_classes`; warns (printed) of a class missing from a given train split.

  Raises:
    ValueError: one line naming what was found.
  """
  where = collections.defaultdict(set)  # label -> class keys ("train/cat") holding files
  for c in listing.candidates if listing is not None else ():  # Beam: the driver lists nothing
    if c.class_dir in label_of_dir:
      where[label_of_dir[c.class_dir]].add(c.class_dir)
  by_fold = collections.defaultdict(list)
  for name in names:
    by_fold[name.casefold()].append(name)
  clashes = [group for group in by_fold.values() if len(group) > 1]
  if clashes:
    shown = " and ".join(f"{n!r} ({', '.join(sorted(where[n])) or 'no files'})" for n in clashes[0])
    raise ValueError(
        f"Class names differ only in case: {shown}; they would be {len(clashes[0])} classes. "
        "Rename the folders (or labels) so that they match, or give class_names.")
  check_enough_classes(config, names, "", _single_folder_hint(config, source, names, listing))
  folders = getattr(source, "split_folders", None)
  if folders and "train" in folders.values():
    train = next(f for f, split in folders.items() if split == "train")
    for name in names:
      held = sorted(k.split("/", 1)[0] for k in where[name])
      if held and train not in held:
        # Printed, not only logged: the tfds command line hides INFO logs.
        print(f"Warning: class {name!r} has no files in the train split ({train}/), only in "
              f"{', '.join(f + '/' for f in held)}: a model cannot learn it.", flush=True)


def check_enough_classes(config, names: Sequence[str], which: str = "", hint: str = "") -> None:
  """Raises ValueError when `names` holds fewer than `config.min_classes` classes."""
  minimum = getattr(config, "min_classes", DEFAULT_MIN_CLASSES)
  if len(names) >= minimum:
    return
  root = getattr(config, "root", None)
  found = f"{len(names)} class{'' if len(names) == 1 else 'es'}"
  raise ValueError(
      f"The build found {found}{' ' + which if which else ''}"
      f"{' in ' + root if root else ''}: {list(names)}; min_classes is {minimum}. "
      f"{hint or 'Check the root and class_names, or lower min_classes.'}")


def _single_folder_hint(config, source, names: Sequence[str], listing) -> str:
  """What to do when the root holds one folder beside other files (a download's wrapper
  folder, such as the Kaggle zip's `PetImages/` beside its licence and readme)."""
  root = getattr(config, "root", None)
  if len(names) != 1 or not root or getattr(source, "split_folders", None) or listing is None:
    return ""
  beside = [c.path for c in listing.candidates if c.ignore_reason == sources_lib.NOT_IN_CLASS_FOLDER]
  if not beside:
    return ""
  folder = names[0]
  files = f"{len(beside)} other file{'' if len(beside) == 1 else 's'}"
  if tf.io.gfile.isdir(root):
    hint = f"{root} holds {folder}/ and {files}: use {os.path.join(root, folder)} as root"
  else:
    hint = f"{root} holds {folder}/ and {files}: extract that folder and use it as root"
  if folder.casefold() == "petimages":
    manual = root if tf.io.gfile.isdir(root) else os.path.dirname(root) or "."
    hint += f", or the pet_images builder (--manual_dir {manual})"
  return hint + "."


def check_plan(config, tally: card_lib.Tally, before: dict, names: Sequence[str]) -> None:
  """After validation and duplicates, local and Beam alike (from what the card counts):
  too many unusable files, a class with no usable file, fewer usable classes than
  `config.min_classes`.

  Raises:
    ValueError: one line naming what was found.
  """
  check_usable(config, tally)
  card_lib.check_classes(before, names, sum(tally.status.values()), config)
  found = {n: sum(per_class.get(n, 0) for per_class in before.values()) for n in names}
  check_enough_classes(config, [n for n in names if found[n]], "with usable images")


def check_usable(config, tally: card_lib.Tally) -> None:
  """Fails when more than `config.max_skipped_fraction` of the image files (every file but
  the ignored ones) cannot be used, naming the most common reasons with an example each."""
  limit = getattr(config, "max_skipped_fraction", DEFAULT_MAX_SKIPPED_FRACTION)
  considered = sum(tally.status.values()) - tally.status[validation.IGNORED]
  skipped = tally.status[validation.SKIPPED]
  if not considered or skipped <= limit * considered:
    return
  by_kind = tally.reasons[validation.SKIPPED]
  top = sorted((k for k, c in by_kind.items() if c), key=lambda k: (-by_kind[k], k))
  reasons = ", ".join(f"{kind} {by_kind[kind]} (e.g. {tally.examples[kind]})"
                      for kind in top[:_REASONS_SHOWN])
  raise ValueError(
      f"{skipped} of {considered} image files ({skipped / considered:.0%}) are unusable, more "
      f"than max_skipped_fraction {limit}: {reasons}. Check the root and the files, or raise "
      "max_skipped_fraction to build anyway.")
