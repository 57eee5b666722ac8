"""tfx-canary: ship blessed TFX models to TensorFlow Serving through a canary."""

__version__ = "0.1.0"
