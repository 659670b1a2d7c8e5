"""Keras model modules, found by name in one registry."""

from petpipe.models.registry import DEFAULT, build, get, names, register
