"""Classifies image files, or folders of them, with a model saved by training.

  petpipe predict --model outputs/demo/model.keras cat.jpg more_pets/

Prints `path: label (probability)` per image, in the order given (folders sorted,
recursively). A file that cannot be read or decoded is reported as `path: error: reason`
on stderr and skipped: the exit code is 0 when at least one image was classified, and 1
when none was (so a script notices a run that classified nothing).

The work is `petpipe.prediction.predict_files`: class names and preprocessing from
`classes.json` beside the model, images made exactly as the training pipeline made them.
"""

from __future__ import annotations

import os
from typing import Optional

import click

from petpipe import console

# TensorFlow's start-up chatter is not the user's business (started before importing it).
console.start_tensorflow()

from petpipe import prediction  # noqa: E402
from petpipe.images import errors  # noqa: E402


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_path", default=os.path.join("outputs", "demo", "model.keras"),
              show_default=True, type=click.Path(dir_okay=False), help="A saved .keras model.")
@click.option("--classes", "classes_path", type=click.Path(dir_okay=False),
              help="classes.json with class names and preprocessing. [default: beside the model]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--unsafe", is_flag=True,
              help="Allow unsafe deserialisation (Lambda layers); only for trusted files.")
def main(paths: tuple, model_path: str, classes_path: Optional[str], batch_size: int,
         unsafe: bool):
  """Prints the predicted label and its probability for each image in PATHS."""
  try:
    results = prediction.predict_files(model_path, paths, classes_path=classes_path,
                                       batch_size=batch_size, unsafe=unsafe)
  except FileNotFoundError as e:
    hint = "--classes" if classes_path and e.filename == classes_path else "--model"
    raise click.BadParameter(errors.one_line(e), param_hint=hint) from None
  except prediction.UnsafeModelError as e:
    raise click.ClickException(f"{e} Pass --unsafe if you trust the file.") from None
  except ValueError as e:
    raise click.ClickException(str(e)) from None

  classified = failed = 0
  for result in results:
    if result.error is not None:
      click.echo(f"{result.path}: error: {result.error}", err=True)
      failed += 1
    else:
      click.echo(f"{result.path}: {result.label} ({result.probability:.3f})")
      classified += 1
  if not classified:
    raise click.ClickException(
        f"no image classified ({failed} unreadable)." if failed else "no image files found.")


if __name__ == "__main__":
  main()
