"""Start-up of the commands that import TensorFlow and TFX: the garbage collector waits while they load.

Importing TensorFlow, TFX, Beam and TFMA builds about a million objects that live as long as the
process. The collector's full passes over them while they load free almost nothing and took a fifth of
the import time (``serve``: 3.2-3.6 -> 2.6-2.7 CPU-s to ready). ``gc.freeze`` then keeps them out of
every later full pass, which a pipeline run makes while it traces and builds graphs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_frozen = False


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
