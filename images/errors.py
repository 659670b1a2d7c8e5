"""The one function that turns an error into a one-line reason.

Manifests, skip lists, prediction results and the command line's `Error:` line all show
errors as one line. TensorFlow wraps its messages in `{{function_node ...}}` and
`[Op:DecodeImage] name: ...`; OS errors carry an errno prefix; Pillow and others may span
lines. A wrapped error (`raise X from cause`) shows its cause after it, in parentheses.
"""

from __future__ import annotations

import re

_TF_FUNCTION = re.compile(r"\{\{[^}]*\}\}")
_TF_OP = re.compile(r"\[Op:[^\]]*\].*", re.S)


def one_line(error: BaseException) -> str:
  """The error's message as one line, without TensorFlow's op and function decorations."""
  text = _message(error)
  cause = error.__cause__
  if cause is not None and cause is not error:
    detail = one_line(cause)
    if detail and detail not in text:
      text = f"{text} ({detail})" if text else detail
  return text or type(error).__name__


def _message(error: BaseException) -> str:
  if isinstance(error, OSError) and error.strerror:
    # "[Errno 2] No such file or directory: 'x'" -> the reason alone; the caller names the file.
    return _first_line(error.strerror)
  message = getattr(error, "message", None)  # tf.errors.OpError keeps it unformatted
  text = message if isinstance(message, str) and message else str(error)
  text = _TF_OP.sub("", _TF_FUNCTION.sub("", text))
  return _first_line(text)


def _first_line(text: str) -> str:
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  return lines[0] if lines else ""
