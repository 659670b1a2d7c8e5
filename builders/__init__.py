"""TFDS builders that turn image folders into validated, balanced, sharded TFRecords."""
