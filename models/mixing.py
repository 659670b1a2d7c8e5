"""MixUp and CutMix: augmentations that mix pairs of training images and their labels.

They need the labels, which the model's layers never see, so they run in the training
step (`MixingModel.train_step`), on the batch the input pipeline shipped as uint8:

* MixUp (Zhang et al. 2018) blends each image with a partner from the same batch,
  `lam * image + (1 - lam) * partner`, `lam ~ Beta(0.2, 0.2)` per image (Keras's
  `keras.layers.MixUp` default);
* CutMix (Yun et al. 2019) pastes a box of the partner into each image, the box covering
  `1 - lam` of it, `lam ~ Beta(1, 1)` (the paper's alpha), at a uniform position inside the
  image (as `keras.layers.CutMix` places it); `lam` is then the share of pixels kept;
* with both, each batch gets one of them, chosen with probability 1/2 (as timm does).

The loss is the mixed loss `lam * L(label) + (1 - lam) * L(partner's label)`, the compiled
loss computed once per label with those sample weights, so it is right for a sigmoid and a
softmax head alike (and for class weights: each part weighs its own class). Training
accuracy is measured against the label holding the larger share of each mixed image.
Validation, evaluation and prediction see unmixed images.

Why not `keras.layers.MixUp`/`CutMix` themselves (the formulas above are theirs): their
draws advance a `SeedGenerator` variable instead of following from the step, their Beta
draws use a gamma op that XLA cannot compile (`StatelessRandomGammaV3`), and given one
stateless seed `CutMix` draws a box's x and y from the same numbers. Here every draw is
stateless, keyed on (run seed, optimizer step, replica): a run resumed at any step repeats
the uninterrupted run's draws with no state to save, and the whole step compiles with XLA.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from petpipe.models import determinism
from petpipe.models import preprocessing

MIXING = preprocessing.MIXING_AUGMENTATIONS
MIXUP_ALPHA = 0.2
CUTMIX_ALPHA = 1.0
# Jöhnk's sampler below draws candidates until one is accepted; this many misses in a row
# is allowed a chance below 1e-9 (the last candidate is taken then).
_MISS_CHANCE = 1e-9


class MixedLabels(NamedTuple):
  """The labels of a mixed batch.

  Attributes:
    labels: each image's own labels, as the input gave them.
    order: the index in the batch of the partner mixed into each image.
    share: each image's share of its own label, in [0, 1].
  """

  labels: tf.Tensor
  order: tf.Tensor
  share: tf.Tensor

  def partners(self) -> tf.Tensor:
    return tf.gather(self.labels, self.order)

  def dominant(self) -> tf.Tensor:
    """Per image, the label with the larger share."""
    share = tf.reshape(self.share, [-1] + [1] * (self.labels.shape.rank - 1))
    return tf.where(share >= 0.5, self.labels, self.partners())


def mix(images: tf.Tensor, labels: tf.Tensor, names: Sequence[str], seed: int,
        step: tf.Tensor) -> tuple[tf.Tensor, MixedLabels]:
  """Mixes a batch of images (batch, height, width, channels) with `names` (some of
  `MIXING`); the draws follow from (`seed`, `step`) alone. Returns float32 images and
  the `MixedLabels`."""
  unknown = [n for n in names if n not in MIXING]
  if unknown or not names:
    raise ValueError(f"names must be some of {', '.join(MIXING)}. Received: names={names!r}")
  images = tf.cast(images, tf.float32)
  batch = tf.shape(images)[0]
  key = _keys(seed, step)
  order = tf.argsort(tf.random.stateless_uniform([batch], next(key)))
  partners = tf.gather(images, order)
  mixed = {}
  if "mixup" in names:
    share = beta(batch, MIXUP_ALPHA, next(key))
    weight = share[:, None, None, None]
    mixed["mixup"] = (weight * images + (1.0 - weight) * partners, share)
  if "cutmix" in names:
    inside = _boxes(tf.shape(images), beta(batch, CUTMIX_ALPHA, next(key)), key)
    share = 1.0 - tf.reduce_mean(tf.cast(inside, tf.float32), axis=[1, 2, 3])
    mixed["cutmix"] = (tf.where(inside, partners, images), share)
  if len(mixed) == 1:
    images, share = next(iter(mixed.values()))
  else:
    cut = tf.random.stateless_uniform([], next(key)) < 0.5
    images = tf.where(cut, mixed["cutmix"][0], mixed["mixup"][0])
    share = tf.where(cut, mixed["cutmix"][1], mixed["mixup"][1])
  return images, MixedLabels(labels, order, share)


def beta(count: tf.Tensor, alpha: float, seed: tf.Tensor) -> tf.Tensor:
  """`count` Beta(alpha, alpha) samples from stateless uniforms (Jöhnk's algorithm, in
  logs), so XLA compiles it: `tf.random.stateless_gamma` has no XLA kernel."""
  if not alpha > 0:
    raise ValueError(f"alpha must be positive. Received: alpha={alpha!r}")
  if alpha == 1.0:
    return tf.random.stateless_uniform([count], seed)
  # Jöhnk: with x = u**(1/a), y = v**(1/a), x / (x + y) given x + y <= 1 is Beta(a, a).
  accepted = math.exp(2 * math.lgamma(alpha + 1) - math.lgamma(2 * alpha + 1))
  tries = max(1, math.ceil(math.log(_MISS_CHANCE) / math.log1p(-min(accepted, 0.999999))))
  u = tf.random.stateless_uniform([2, count, tries], seed, minval=1e-30, maxval=1.0)
  log_x, log_y = tf.unstack(tf.math.log(u) / alpha)
  ok = tf.reduce_logsumexp(tf.stack([log_x, log_y]), axis=0) <= 0.0
  # The first accepted try (argmax finds the first True), else the last.
  first = tf.argmax(tf.concat([ok[:, :-1], tf.ones_like(ok[:, -1:])], axis=1), axis=1)
  return tf.gather(tf.sigmoid(log_x - log_y), first, batch_dims=1)  # x / (x + y)


def _boxes(shape: tf.Tensor, share: tf.Tensor, key) -> tf.Tensor:
  """Per image a box covering about `1 - share` of it, inside the image (as keras.layers
  .CutMix draws it); True inside the box, shape (batch, height, width, 1)."""
  side = tf.sqrt(1.0 - share)
  inside = []
  for axis in (1, 2):
    length = tf.cast(shape[axis], tf.float32)
    start = tf.random.stateless_uniform([shape[0]], next(key)) * length * (1.0 - side)
    grid = tf.range(length)[None, :]
    inside.append((grid >= start[:, None]) & (grid < (start + side * length)[:, None]))
  return inside[0][:, :, None, None] & inside[1][:, None, :, None]


def _keys(seed: int, step: tf.Tensor):
  """Stateless seeds for successive draws of one step: (a per-draw derivative of `seed`,
  step)."""
  step = tf.cast(step, tf.int64)
  for index in itertools.count():
    yield tf.stack([tf.constant(determinism.derive(seed, index), tf.int64), step])


class MixingModel(keras.Model):
  """A functional model whose training step mixes each batch first (`mix`).

  Built from another functional model's input and output (`MixingModel.of(model, ...)`),
  it shares that model's layers and weights. Only `train_step` changes (as in Keras's
  guide "Customizing what happens in fit()"): it mixes the batch, then runs Keras's own
  step, whose loss and metrics read the `MixedLabels`. `save` writes the plain functional
  model (same layers, weights and compile settings), so `keras.models.load_model` opens
  `model.keras` without this class.
  """

  def __init__(self, inputs, outputs, *, mixing: Sequence[str], mixing_seed: int, **kwargs):
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    self.mixing = tuple(mixing)
    self.mixing_seed = int(mixing_seed)

  @classmethod
  def of(cls, model: keras.Model, mixing: Sequence[str],
         seed: Optional[int] = None) -> "MixingModel":
    """`model` (functional) training on batches mixed with `mixing`; `seed` None draws one
    from NumPy's global generator (`keras.utils.set_random_seed` seeds it)."""
    try:
      inputs, outputs = model.input, model.output
    except (AttributeError, ValueError):
      raise ValueError("mixup and cutmix need a functional model (one with an input and an "
                       f"output). Received: model={model.name!r}") from None
    if seed is None:
      seed = int(np.random.randint(0, 2**31 - 1))
    return cls(inputs, outputs, mixing=mixing, mixing_seed=seed, name=model.name)

  def train_step(self, data):
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    context = tf.distribute.get_replica_context()
    replica = context.replica_id_in_sync_group if context is not None else 0
    # Each replica of each step its own draws.
    replicas = self.distribute_strategy.num_replicas_in_sync
    step = tf.cast(self.optimizer.iterations, tf.int64) * replicas + tf.cast(replica, tf.int64)
    x, y = mix(x, y, self.mixing, self.mixing_seed, step)
    return super().train_step(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    if not isinstance(y, MixedLabels):
      return super().compute_loss(x, y, y_pred, sample_weight, training=training)
    weight = tf.ones_like(y.share) if sample_weight is None else \
        tf.cast(tf.reshape(sample_weight, [-1]), y.share.dtype)
    own, partner = weight * y.share, tf.gather(weight, y.order) * (1.0 - y.share)
    loss = super().compute_loss(x, y.labels, y_pred, own, training=training)
    loss += super().compute_loss(x, y.partners(), y_pred, partner, training=training)
    if self.losses:  # the model's own (regularisation) losses were added twice
      loss -= super().compute_loss(x, y.labels, y_pred, tf.zeros_like(own), training=training)
    return loss

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    if isinstance(y, MixedLabels):
      y = y.dominant()
    return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

  def save(self, filepath, *args, **kwargs):
    """Saves the plain functional model (see the class docstring)."""
    self.plain().save(filepath, *args, **kwargs)

  def plain(self) -> keras.Model:
    """The same layers and weights as a plain functional model, compiled like this one
    (sharing its optimizer and state)."""
    model = keras.Model(self.input, self.output, name=self.name)
    if self.compiled:
      config = keras.saving.deserialize_keras_object(self.get_compile_config())
      model.compile(**{**config, "optimizer": self.optimizer})
    return model
