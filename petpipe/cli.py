"""The `petpipe` command: one click group over the command lines in `scripts/`.

Subcommands are imported only when run, so `petpipe --help` answers without starting
TensorFlow; each one's `-h` shows its own options. TensorFlow is started with its start-up
lines hidden (`console.start_tensorflow`), and only by the commands that need it.
"""

from __future__ import annotations

import importlib

import click

from petpipe import console

# name -> (module holding a click command `main`, one-line description for the listing)
COMMANDS = {
    "build": ("petpipe.scripts.build",
              "Build pet_images or image_folder (tfds build's flags), one Error: line on failure."),
    "train": ("petpipe.scripts.train",
              "Train a model on shards, a TFDS dataset or a folder (no data: the demo)."),
    "predict": ("petpipe.scripts.predict",
                "Classify image files or folders with a trained model."),
    "verify": ("petpipe.scripts.verify",
               "Check every record's CRC and every shard's count of a built dataset."),
    "diff": ("petpipe.scripts.diff",
             "What changed between two builds of a dataset (exit 1 when anything did)."),
    "show": ("petpipe.scripts.show",
             "Write pictures of a built dataset: examples with labels, and its card."),
    "sample-data": ("petpipe.scripts.make_sample_data",
                    "Write a synthetic PetImages folder or zip to try the builders."),
    "data-service": ("petpipe.scripts.data_service",
                     "Start a tf.data service dispatcher or worker."),
    "benchmark": ("petpipe.scripts.benchmark",
                  "Measure input pipelines side by side and against their limits (images/s)."),
    "benchmark-build": ("petpipe.scripts.benchmark_build",
                        "Measure pet_images builds against TFDS's recipe and a decode floor."),
    "benchmark-distributed": ("petpipe.scripts.benchmark_distributed",
                              "Measure Beam builds and tf.data service input against local."),
    "benchmark-scale": ("petpipe.scripts.benchmark_scale",
                        "Measure how builds grow with files (10^4 to 10^6), locally and on Beam."),
    "stress-kill-build": ("petpipe.scripts.stress_kill_build",
                          "Kill builds at random moments and check the result is identical."),
}
# Commands that never import TensorFlow.
WITHOUT_TENSORFLOW = ("sample-data",)


class _LazyGroup(click.Group):
  """A group whose subcommands are imported on first use."""

  def list_commands(self, ctx):
    return list(COMMANDS)

  def get_command(self, ctx, name):
    if name not in COMMANDS:
      return None
    if name not in WITHOUT_TENSORFLOW:
      console.start_tensorflow()
    return importlib.import_module(COMMANDS[name][0]).main

  def format_commands(self, ctx, formatter):
    with formatter.section("Commands"):
      formatter.write_dl([(name, help_text) for name, (_, help_text) in COMMANDS.items()])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="petpipe")
def main() -> None:
  """Validated TFDS image datasets, streaming tf.data input and Keras training.

  Build datasets with `petpipe build pet_images ...` or `petpipe build image_folder
  --config '{...}'` (or the same with `tfds build ... --imports petpipe.builders`).
  """
