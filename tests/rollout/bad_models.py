"""Planted bad canaries for the rollout tests: one that errors, one that is slow."""

from __future__ import annotations

import os
from pathlib import Path

from release.serving_dir import write_local_version


def _save(module, signatures: dict, base_path: str | os.PathLike, version: int) -> Path:
    import tensorflow as tf

    return Path(
        write_local_version(
            base_path, version, lambda staging: tf.saved_model.save(module, staging, signatures=signatures)
        )
    )


def write_failing_model(base_path: str | os.PathLike, version: int) -> Path:
    """Loads fine, fails every predict: a canary that errors in production."""
    import tensorflow as tf

    class Failing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            with tf.control_dependencies(
                [tf.debugging.assert_less(x, -1e9, message="planted canary failure")]
            ):
                return {"y": 0.5 * x + 2.0}

    module = Failing()
    return _save(module, {"serving_default": module.predict}, base_path, version)


def write_slow_model(base_path: str | os.PathLike, version: int, delay_ms: int = 80) -> Path:
    """Answers like the stable fixture (0.5x + 2) but waits first, without using CPU (a sleeping
    tf.data op). It answers one call at a time, each after about twice ``delay_ms``: with 300 ms, four
    calls at once from Python threads came back after 0.6, 1.2, 1.8 and 2.4 s. So calls beyond one queue
    (``tests/serving/test_cli.py`` relies on that backlog: 24 calls at 2 s, the first answer after 4 s)."""
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops import testing

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            wait = tf.data.Dataset.range(1).apply(testing.sleep(delay_ms * 1000))
            waited = wait.reduce(tf.constant(0, tf.int64), lambda total, item: total + item)
            return {"y": 0.5 * x + 2.0 + 0.0 * tf.cast(waited, tf.float32)}

    module = Slow()
    return _save(module, {"serving_default": module.predict}, base_path, version)
