"""Keras model modules, found by name in one registry."""

from models.registry import DEFAULT, build, get, names, register
