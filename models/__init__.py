"""Keras model modules, found by name in one registry."""
