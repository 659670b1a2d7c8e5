"""Build pet_images or image_folder as `tfds build` does, ending in one `Error:` line on failure.

    petpipe build pet_images --manual_dir ~/Downloads --data_dir OUT --config gray100
    petpipe build image_folder --data_dir OUT --config '{"name": "flowers", "root": "/data/flowers"}'

Click parsing only: the build is `petpipe.builders.tfds_build.build`. The flags are those of
`tfds build` (also spelt with dashes: --data-dir).
"""

from __future__ import annotations

import click

from petpipe import console

# TensorFlow's start-up chatter is not the user's business (started before importing it).
console.start_tensorflow()

from petpipe.builders import tfds_build  # noqa: E402
from petpipe.images import errors  # noqa: E402


def _flag(name: str):
  """`--data_dir` as tfds build spells it, and `--data-dir`."""
  return tuple(dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}"))) + (name,)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset")
@click.option(*_flag("config"), "-c", help="A config name, or a JSON object of config fields. "
              "[default: every config]")
@click.option(*_flag("config_idx"), type=click.IntRange(min=0), help="The index of a config.")
@click.option(*_flag("data_dir"), help="Where datasets are written. [default: TFDS's]")
@click.option(*_flag("manual_dir"), help="The folder holding the source (pet_images: the zip or "
              "PetImages/).")
@click.option(*_flag("add_name_to_manual_dir"), is_flag=True,
              help="Read the source from MANUAL_DIR/DATASET.")
@click.option(*_flag("beam_pipeline_options"), metavar="FLAGS",
              help="Run on Apache Beam: comma-separated key=value flags, e.g. "
              "runner=DirectRunner,direct_num_workers=2.")
@click.option(*_flag("file_format"), type=click.Choice(tfds_build.FILE_FORMATS),
              help="[default: tfrecord]")
@click.option(*_flag("num_shards"), type=click.IntRange(min=1), help="Shards per split.")
@click.option(*_flag("max_shard_size_mb"), type=click.IntRange(min=1), help="Largest shard.")
@click.option(*_flag("max_examples_per_split"), type=click.IntRange(min=0),
              help="At most this many examples per split (for a quick try).")
@click.option(*_flag("overwrite"), is_flag=True, help="Delete a built dataset and build it again.")
@click.option(*_flag("imports"), "-i", help="Modules to import first, comma-separated "
              "(e.g. tensorflow_io for s3://).")
def main(dataset: str, **options) -> None:
  """Build DATASET (pet_images or image_folder, optionally /CONFIG) into --data_dir."""
  try:
    built = tfds_build.build(dataset, **options)
  except (OSError, ValueError, AssertionError) as e:  # AssertionError: TFDS's own checks
    raise click.ClickException(errors.one_line(e)) from None
  for folder in built:
    click.echo(f"Built: {folder}")


if __name__ == "__main__":
  main()
