"""Start-up of the commands that import TensorFlow and TFX: which Keras, and no garbage collection while
they load.

Keras 2 (tf_keras) everywhere: tf.Transform asks for it when it is imported, which is too late in a
process where a module touched ``tf.keras`` first (``import pipeline.pipeline`` alone gave Keras 3, the
``run`` command's own import order Keras 2). Setting it before TensorFlow loads makes every process
train, warm-start and serve with the same Keras whatever it imports first, and the model server, which
never calls Keras, starts 1.5 CPU-s sooner than with Keras 3 (with scikit-learn, matplotlib and pandas).

Importing TensorFlow, TFX, Beam and TFMA builds about a million objects that live as long as the
process. The collector's full passes over them while they load free almost nothing and took a fifth of
the import time (``serve``: 3.2-3.6 -> 2.6-2.7 CPU-s to ready). ``gc.freeze`` then keeps them out of
every later full pass, which a pipeline run makes while it traces and builds graphs.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

KERAS_2_ENV = "TF_USE_LEGACY_KERAS"

_frozen = False


def use_keras_2() -> None:
    """Ask TensorFlow for Keras 2 (``tf_keras``) unless the environment says otherwise; before its import."""
    os.environ.setdefault(KERAS_2_ENV, "1")


@contextmanager
def heavy_imports() -> Iterator[None]:
    """No collection while the block imports; then everything loaded so far is frozen.

    Once per process: later uses (a command run again in one process, as tests do) change nothing, so
    objects that became garbage since are never frozen with the rest.
    """
    if _frozen:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        freeze_imported()


def freeze_imported() -> None:
    """Keep everything loaded so far out of later full collections, and collect again."""
    global _frozen
    gc.freeze()
    gc.enable()
    _frozen = True
