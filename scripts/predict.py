"""Classifies image files, or folders of them, with a model saved by training.

  petpipe predict --model outputs/demo/model.keras cat.jpg more_pets/
  petpipe predict --model outputs/demo/model.keras more_pets/ --csv predictions.csv
  petpipe predict --model outputs/demo/model.keras more_pets/ --json > predictions.json

Prints `path: label (probability)` per image, in the order given (folders in natural order,
`Dog/2.jpg` before `Dog/10.jpg`, recursively). A file that cannot be read or decoded is
reported as `path: error: reason` on stderr and skipped: the exit code is 0 when at least
one image was classified, and 1 when none was (so a script notices a run that classified
nothing). `--csv FILE` also writes every result, errors included, as a CSV row; `--json`
prints them all as one JSON list instead of lines.

The work is `petpipe.prediction.predict_files`: class names and preprocessing from
`classes.json` beside the model, images made exactly as the training pipeline made them.
"""

from __future__ import annotations

import dataclasses
import json
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
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="Also write every result (path, label, probability, error) to this CSV file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print all results as one JSON list (errors included) instead of lines.")
def main(paths: tuple, model_path: str, classes_path: Optional[str], batch_size: int,
         unsafe: bool, csv_path: Optional[str], as_json: bool):
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

  if csv_path or as_json:
    results = list(results)
  if csv_path:
    prediction.write_csv(results, csv_path)
  if as_json:
    click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
  classified = failed = 0
  for result in results:
    if result.error is not None:
      if not as_json:
        click.echo(f"{result.path}: error: {result.error}", err=True)
      failed += 1
    else:
      if not as_json:
        click.echo(f"{result.path}: {result.label} ({result.probability:.3f})")
      classified += 1
  if not classified:
    raise click.ClickException(
        f"no image classified ({failed} unreadable)." if failed else "no image files found.")


if __name__ == "__main__":
  main()
