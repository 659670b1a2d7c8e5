"""Benchmarks and stress tests of petpipe, callable from Python; `scripts/` holds their CLIs.

* `input_speed`: every way of feeding one folder to Keras, side by side with the decode
  ceilings and raw-format loops of the same run (images/s, time to first batch, peak RSS).
* `build_speed`: the pet_images builds against TFDS's cats_vs_dogs recipe and a decode
  floor (files/s).
* `natural_pictures`: a natural-photo twin of a generated sample folder.
* `distributed`: Beam builds and tf.data service input against local ones.
* `kill_builds`: `kill -9` builds at random moments; the result must stay intact.
* `scale`: how builds grow from 10^4 to 10^6 files, locally and on Beam (peak RSS, job graph).

Submodules are not imported here: each one starts TensorFlow, and `input_speed` also runs
as `python -m petpipe.benchmarks.input_speed` in its fresh worker processes.
"""
