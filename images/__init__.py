"""The image-file layer: one way to find, check and decode an image file.

Below the builders, the pipeline's readers and prediction, which all call it:

* `files`: the one extension list, the junk rules, a walk safe on messy folders (symlink
  loops, named pipes, names that are not UTF-8), bounded reads; `sources`: a folder or a
  zip of class folders as a listing of candidates and what is left out, with reasons.
* `headers`: the one header reader; `validation`: the one check (header, limits, format
  policy, a full decode for builds) and its verdicts.
* `decode`: the format policy and its decoders (Pillow rescues what TensorFlow rejects);
  `transform`: the one transform, decode -> channels -> resize; `pixels`: its small ops.
* `errors.one_line`: the one function that turns an error into a one-line reason.
* `filesystems`: paths on any file system TensorFlow knows.

It imports nothing else of petpipe.
"""
