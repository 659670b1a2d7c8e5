"""`tfds build` for this project's builders, as a function that raises ordinary exceptions.

    from petpipe.builders import tfds_build
    tfds_build.build("pet_images", config="gray100", manual_dir="~/Downloads", data_dir="out")

`petpipe build` is this function behind the flags of `tfds build` (the ones that apply to
`pet_images` and `image_folder`), so a failed build ends in one `Error:` line instead of a
traceback. Only TFDS's public API is used: `builder_config_cls`, `BUILDER_CONFIGS`,
`download_and_prepare` and `tfds.download.DownloadConfig`.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Optional, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from petpipe.builders.image_folder import image_folder_dataset_builder as image_folder
from petpipe.builders.pet_images import pet_images_dataset_builder as pet_images

BUILDERS = {"pet_images": pet_images.Builder, "image_folder": image_folder.Builder}
FILE_FORMATS = ("tfrecord", "array_record")


def build(dataset: str, *, config: Optional[str] = None, config_idx: Optional[int] = None,
          data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
          add_name_to_manual_dir: bool = False, beam_pipeline_options: Optional[str] = None,
          file_format: Optional[str] = None, num_shards: Optional[int] = None,
          max_shard_size_mb: Optional[int] = None, max_examples_per_split: Optional[int] = None,
          overwrite: bool = False, imports: Optional[str] = None) -> list[str]:
  """Builds `dataset` as `tfds build` does; returns the folders built (or found built).

  Args:
    dataset: "pet_images" or "image_folder", optionally with a config ("pet_images/gray100"),
      or the path of one of their builder folders (`builders/pet_images`).
    config: a config name, or a JSON object of `FolderConfig` fields; with neither this
      nor `config_idx` (nor a config in `dataset`), every config is built.
    config_idx: the index of a config in `BUILDER_CONFIGS`.
    beam_pipeline_options: comma-separated Beam flags ("runner=DirectRunner,...").
    imports: comma-separated modules to import first (e.g. `tensorflow_io`).
    Others: as `tfds build`'s flags of the same names.

  Raises:
    ValueError: an unknown dataset, config or flag value (one line, naming it).
    FileNotFoundError, OSError: missing inputs; and what the build itself raises.
  """
  for module in filter(None, (imports or "").split(",")):
    importlib.import_module(module.strip())
  builder_cls, named = _builder_class(dataset)
  given = [c for c in (named, config, config_idx) if c is not None]
  if len(given) > 1:
    raise ValueError("Give the config once: in the dataset name, --config or --config_idx. "
                     f"Received: dataset={dataset!r}, config={config!r}, config_idx={config_idx!r}")
  if file_format is not None and file_format not in FILE_FORMATS:
    raise ValueError(f"file_format must be one of {', '.join(FILE_FORMATS)}. "
                     f"Received: file_format={file_format!r}")
  configs = _configs(builder_cls, named if named is not None else config, config_idx)
  download = _download_config(builder_cls.name, manual_dir, add_name_to_manual_dir,
                              beam_pipeline_options, num_shards, max_shard_size_mb,
                              max_examples_per_split)
  built = []
  for chosen in configs:
    kwargs = dict(config=chosen, data_dir=data_dir, file_format=file_format)
    builder = builder_cls(**kwargs)
    if overwrite and builder.is_prepared():
      tf.io.gfile.rmtree(os.fspath(builder.data_path))
      builder = builder_cls(**kwargs)
    try:
      builder.download_and_prepare(download_config=download)
    except AssertionError as e:
      raise _manual_dir_error(builder_cls, e) from None
    built.append(os.fspath(builder.data_dir))
  return built


def _manual_dir_error(builder_cls, error: AssertionError) -> Exception:
  """TFDS's check of --manual_dir (an AssertionError whose instructions follow on more
  lines) as one line; other assertions unchanged."""
  first = str(error).strip().split("\n", 1)[0]
  if not first.startswith("Manual directory"):
    return error
  reason = first.split(". Create it", 1)[0]
  return FileNotFoundError(f"{reason}: {' '.join(builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS.split())}")


def _builder_class(dataset: str):
  """(builder class, config named in `dataset` or None)."""
  path = os.path.expanduser(dataset.rstrip("/"))
  if os.path.isdir(path) and os.path.basename(os.path.abspath(path)) in BUILDERS:
    return BUILDERS[os.path.basename(os.path.abspath(path))], None
  name, _, named = dataset.partition("/")
  if name not in BUILDERS:
    raise ValueError(f"petpipe build builds {' or '.join(BUILDERS)} (tfds build builds other "
                     f"datasets). Received: dataset={dataset!r}")
  return BUILDERS[name], named.split(":", 1)[0] or None


def _configs(builder_cls, config: Optional[str], config_idx: Optional[int]) -> list:
  """The configs to build: the one given (a name, JSON fields or an index), else all."""
  known = [c.name for c in builder_cls.BUILDER_CONFIGS]
  if config_idx is not None:
    if not 0 <= config_idx < len(known):
      raise ValueError(f"config_idx must be in 0..{len(known) - 1} ({', '.join(known)}). "
                       f"Received: config_idx={config_idx}")
    return [known[config_idx]]
  if config is None:
    return known
  if config.lstrip().startswith("{"):
    try:
      fields = json.loads(config)
    except json.JSONDecodeError as e:
      raise ValueError(f"config is not valid JSON ({e.msg} at character {e.pos}). "
                       f"Received: config={config!r}") from None
    if not isinstance(fields, dict):
      raise ValueError(f"config must be a config name or a JSON object. Received: config={config!r}")
    return [builder_cls.builder_config_cls(**fields)]
  if config not in known:
    raise ValueError(f"Unknown config {config!r} of {builder_cls.name}: one of {', '.join(known)}, "
                     "or a JSON object of fields.")
  return [config]


def _download_config(name: str, manual_dir, add_name_to_manual_dir: bool,
                     beam_pipeline_options: Optional[str], num_shards, max_shard_size_mb,
                     max_examples_per_split) -> tfds.download.DownloadConfig:
  """What `tfds build` passes to `download_and_prepare` for the same flags."""
  kwargs = {}
  if manual_dir is not None:
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    kwargs["manual_dir"] = os.path.join(manual_dir, name) if add_name_to_manual_dir else manual_dir
  if num_shards:
    kwargs["num_shards"] = num_shards
  if max_shard_size_mb:
    kwargs["max_shard_size"] = max_shard_size_mb << 20
  if beam_pipeline_options:
    kwargs["beam_options"] = beam_options(beam_pipeline_options.split(","))
  return tfds.download.DownloadConfig(
      max_examples_per_split=max_examples_per_split,
      download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS, **kwargs)


def beam_options(flags: Sequence[str]):
  """Beam's `PipelineOptions` from "key=value" flags, as `tfds build` makes them."""
  # Imported here: only Beam builds need apache_beam.
  from apache_beam.options.pipeline_options import PipelineOptions

  return PipelineOptions(flags=[f"--{flag.strip()}" for flag in flags if flag.strip()])
