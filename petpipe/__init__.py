"""petpipe: validated TFDS image datasets, streaming tf.data pipelines and Keras training.

One import name; the repository's folders are its subpackages:

* `petpipe.builders` (`builders/`): TFDS builders `pet_images` and `image_folder`;
  importing it registers both with TFDS (`tfds build NAME --imports petpipe.builders`).
* `petpipe.pipeline` (`pipeline/`): the feature schema, the one image transform, the
  tf.data input pipelines and the Keras-compatible folder loader.
* `petpipe.models` (`models/`): Keras models and the training loop; data-agnostic.
* `petpipe.experiment`: a whole training run (data, model, outputs) from one config.
* `petpipe.scripts` (`scripts/`): the command lines behind the `petpipe` command.
"""

__version__ = "0.2.0"
