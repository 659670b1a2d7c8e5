"""Trains a Keras model on built TFRecord shards, a TFDS dataset or an image folder.

  petpipe train                 # the demo: sample PetImages -> pet_images/gray100 -> cnn
  petpipe train --shards 'out/pet_images/gray100/1.0.0/pet_images-train.tfrecord*'
  petpipe train --dataset pet_images/gray100 --data-dir out
  petpipe train --folder ~/PetImages --image-size 160 --channels 3
  python scripts/train.py ...   # the same command

Click parsing only: the run is `petpipe.experiment.run` (what it writes: its docstring).
"""

from __future__ import annotations

import os
import re

import click

from petpipe import console

# TensorFlow's start-up chatter is not the user's business (started before importing it).
console.start_tensorflow()

from petpipe import experiment  # noqa: E402
from petpipe.images import errors  # noqa: E402
from petpipe import models  # noqa: E402
from petpipe.models import accelerator  # noqa: E402
from petpipe.models import strategy  # noqa: E402


class _Size(click.ParamType):
  """An image size: "100" (square) or "100,80" / "100x80" (height, width)."""

  name = "SIZE"

  def convert(self, value, param, ctx):
    if isinstance(value, tuple):
      return value
    try:
      size = tuple(int(v) for v in re.split(r"[,x]", str(value)))
    except ValueError:
      self.fail(f"expected N or H,W. Received: {value!r}", param, ctx)
    if len(size) == 1:
      size = size * 2
    if len(size) != 2 or min(size) <= 0:
      self.fail(f"expected positive N or H,W. Received: {value!r}", param, ctx)
    return size


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--shards", help="Glob of training shards; validation/test siblings of a built "
              "TFDS dataset are found automatically.")
@click.option("--val-shards", help="Glob of validation shards.")
@click.option("--test-shards", help="Glob of test shards.")
@click.option("--dataset", help="TFDS dataset name, e.g. pet_images/gray100.")
@click.option("--data-dir", help="TFDS data directory for --dataset.")
@click.option("--folder", help="Image folder with one sub-folder per class.")
@click.option("--train-on-held-out", is_flag=True,
              help="Allow --shards of a validation or test split (then used for training only).")
@click.option("--data-service", metavar="ADDRESS",
              help="tf.data service dispatcher (grpc://HOST:PORT) to run the training input "
              "on, each example once per epoch; see `petpipe data-service`.")
@click.option("--model", help=f"One of {', '.join(models.names())}. "
              f"[default: {experiment.DEMO.model} for the demo, else {models.DEFAULT}]")
@click.option("--epochs", type=click.IntRange(min=1),
              help=f"[default: {experiment.DEMO.epochs} for the demo, else {experiment.DEFAULT_EPOCHS}]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Images per batch and replica (GPU or worker).")
@click.option("--image-size", type=_Size(),
              help="N or H,W. [default: the stored size of raw records, else 100]")
@click.option("--channels", type=click.Choice(["1", "3"]),
              help="[default: the stored channels, else 1]")
@click.option("--learning-rate", default=1e-3, show_default=True,
              type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", type=int, help=f"Run seed. [default: {experiment.DEMO.seed} for the demo, "
              "else random; kept for resuming]")
@click.option("--deterministic", is_flag=True, help="Deterministic ops and input order.")
@click.option("--augment", is_flag=False, flag_value="flip,rotate", metavar="LIST",
              help="In-model augmentation, comma-separated: "
              f"{','.join(models.preprocessing.AUGMENTATIONS)}; alone: flip,rotate. "
              "[default: the model's]")
@click.option("--no-augment", is_flag=True, help="No augmentation.")
@click.option("--class-weights", default="auto", show_default=True,
              type=click.Choice(["auto", "none"]), help="auto: inverse class frequency.")
@click.option("--mixed-precision", default="auto", show_default=True,
              type=click.Choice(accelerator.FLAGS), help="auto: on when a GPU is visible.")
@click.option("--jit-compile", default="auto", show_default=True,
              type=click.Choice(accelerator.FLAGS), help="XLA; auto: on when a GPU is visible.")
@click.option("--steps-per-execution", type=click.IntRange(min=1),
              help=f"[default: auto: {accelerator.GPU_STEPS_PER_EXECUTION} with a GPU, else 1]")
@click.option("--out", help="Output folder. [default: outputs/demo or outputs/MODEL]")
@click.option("--save-every", type=click.IntRange(min=0), metavar="STEPS",
              help="Save the training state every STEPS steps (and after each epoch); 0: "
              "after each epoch only. [default: every ~2 minutes of training]")
@click.option("--best-checkpoint/--no-best-checkpoint", default=True, show_default=True,
              help="Keep model.best.keras, the epoch with the lowest validation loss "
              "(when it is the last epoch, model.keras is it and no copy is kept).")
@click.option("--early-stopping", type=click.IntRange(min=1), metavar="PATIENCE",
              help="Stop after PATIENCE epochs without a lower validation loss.")
@click.option("--lr-schedule", default="constant", show_default=True,
              type=click.Choice(experiment.LR_SCHEDULES),
              help="cosine: per-epoch decay to 0; plateau: halve after 2 epochs without "
              "progress.")
@click.option("--stall-timeout", default=120.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="End the run when no batch arrives for this long (a stalled input).")
@click.option("--worker-timeout", default=30.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="With --data-service: end an epoch when no batch came for this long (a lost "
              "worker; its files' examples are missed that epoch).")
@click.option("--suspects", default=100, show_default=True, type=click.IntRange(min=0),
              metavar="N", help="Write suspects.csv: the N training and validation files on "
              "which the reported model's loss is highest (likely mislabelled); 0: none. "
              "Record files only (not --folder).")
def main(**options):
  """Trains a model and writes it with its metrics and pictures to --out.

  With no data option it runs the demo: it writes sample PetImages to the cache
  (~/.cache/petpipe, or $PETPIPE_CACHE) once, builds them with the pet_images builder
  and trains the cnn.
  """
  if options["channels"]:
    options["channels"] = int(options["channels"])
  if options.pop("no_augment"):
    options["augment"] = "none"
  try:
    config = experiment.resolve(experiment.RunConfig(**options))
    where = strategy.placement()
    with console.without_decoder_warnings():  # libjpeg's, from tf.data's decoding threads
      metrics = experiment.run(config, where)
  except KeyboardInterrupt:
    click.echo(f"\nInterrupted. Run the same command to continue from the last saved step "
               f"(kept in {os.path.join(config.out, experiment.OUTPUTS['backup'])}).",
               err=True)
    raise click.exceptions.Exit(130)
  except (OSError, ValueError) as e:  # ConnectionError is an OSError
    raise click.ClickException(errors.one_line(e)) from None
  for line in experiment.summary(metrics):
    click.echo(line)
  if not where.is_chief:
    click.echo(f"Worker {where.worker_index} done; the chief writes the outputs.")
    return
  click.echo(f"Outputs in {config.out}: " + ", ".join(metrics["outputs"].values()) + ".")


if __name__ == "__main__":
  main()
