"""Warm start: a retrain begins from the latest blessed model's weights and trains fewer steps.

The Trainer gets the blessed model the Evaluator compares against as its ``base_model`` (TFX's own
channel). ``export.export_model`` keeps, beside every export and outside what is pushed to serving,
the Keras weights (``<model artifact>/warm-start/model.weights.h5``) and the transform graph they were
trained on (``<model artifact>/transform_graph``), so ``start`` can load the weights into the new model.

Weights only mean something over the encoding they were trained on: a vocabulary index, a bucket, a
z-score. So ``start`` warm-starts only when this run's transform graph is the blessed model's, byte for
byte (WindowTransform reuses it on a retrain: ``components.window_transform.reuse``). It trains from
scratch, and says why, on a first run (no blessed model), when warm start is off
(``warm_start_steps: 0``), when the blessed model has no weights file or no transform graph, when the
window was analyzed afresh, or when the weights do not fit the new model (another architecture).
The evaluation is unchanged: candidate and baseline on the same eval data, the same thresholds.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from dataclasses import asdict, dataclass

import tensorflow as tf
import tensorflow_transform as tft

WARM_START_STEPS = "warm_start_steps"  # the Trainer's custom_config key (steps of a warm retrain)
WEIGHTS_DIR = "warm-start"
WEIGHTS_FILE = "model.weights.h5"  # Keras 3 wants this suffix
REPORT_FILE = "warm_start.json"  # in the Trainer's model_run output: what this run started from
TRANSFORM_DIR = "transform_graph"
# what tf.Transform reads of a transform graph (not its scratch directory)
TRANSFORM_PARTS = (
    tft.TFTransformOutput.TRANSFORM_FN_DIR,
    tft.TFTransformOutput.TRANSFORMED_METADATA_DIR,
    tft.TFTransformOutput.RAW_METADATA_DIR,
)


@dataclass(frozen=True)
class Start:
    steps: int  # how many steps to train
    warm: bool  # whether the weights came from the blessed model
    reason: str  # in words, for the run summary


def weights_path(serving_model_dir: str) -> str:
    """Where the weights of the model exported to ``serving_model_dir`` (``.../Format-Serving``) live."""
    return posixpath.join(posixpath.dirname(serving_model_dir.rstrip("/")), WEIGHTS_DIR, WEIGHTS_FILE)


def save_weights(model: tf.keras.Model, serving_model_dir: str) -> None:
    """Keep the Keras weights beside the export (outside it: they are not pushed to serving)."""
    target = weights_path(serving_model_dir)
    with tempfile.TemporaryDirectory(prefix="tfx-canary-weights-") as scratch:
        local = os.path.join(scratch, WEIGHTS_FILE)
        model.save_weights(local)
        tf.io.gfile.makedirs(posixpath.dirname(target))
        tf.io.gfile.copy(local, target, overwrite=True)


def transform_path(serving_model_dir: str) -> str:
    """Where the transform graph of the model exported to ``serving_model_dir`` is kept."""
    return posixpath.join(posixpath.dirname(serving_model_dir.rstrip("/")), TRANSFORM_DIR)


def save_transform(tf_transform_output, serving_model_dir: str) -> None:
    """Keep the transform graph the model was trained on beside the export (for the next retrain)."""
    source = posixpath.dirname(tf_transform_output.transform_savedmodel_dir.rstrip("/"))
    copy_transform(source, transform_path(serving_model_dir))


def copy_transform(source: str, target: str) -> None:
    """Copy a transform graph: its ``TRANSFORM_PARTS`` and the files at its top (not TFT's scratch)."""
    for part in TRANSFORM_PARTS:
        copy_tree(posixpath.join(source, part), posixpath.join(target, part))
    for name in tf.io.gfile.listdir(source):
        path = posixpath.join(source, name)
        if not tf.io.gfile.isdir(path):
            tf.io.gfile.copy(path, posixpath.join(target, name), overwrite=True)


def copy_tree(source: str, target: str) -> None:
    """Copy every file under ``source`` to the same place under ``target``."""
    for directory, _, files in tf.io.gfile.walk(source):
        relative = posixpath.relpath(directory, source)
        destination = posixpath.normpath(posixpath.join(target, relative))
        tf.io.gfile.makedirs(destination)
        for name in files:
            tf.io.gfile.copy(
                posixpath.join(directory, name), posixpath.join(destination, name), overwrite=True
            )


def transform_digest(transform_dir: str) -> str:
    """sha256 over the ``TRANSFORM_PARTS`` files of a transform graph (their names and bytes)."""
    digest = hashlib.sha256()
    for part in TRANSFORM_PARTS:
        root = posixpath.join(transform_dir, part)
        for directory, _, files in sorted(tf.io.gfile.walk(root)):
            for name in sorted(files):
                path = posixpath.join(directory, name)
                digest.update(posixpath.relpath(path, transform_dir).encode() + b"\0")
                with tf.io.gfile.GFile(path, "rb") as handle:
                    digest.update(handle.read() + b"\0")
    return digest.hexdigest()


def start(model: tf.keras.Model, fn_args) -> Start:
    """Load the blessed model's weights into ``model`` when they fit; the steps to train and why."""
    cold = int(fn_args.train_steps)
    warm_steps = int((fn_args.custom_config or {}).get(WARM_START_STEPS) or 0)
    if not fn_args.base_model:
        return Start(cold, False, f"trained from scratch ({cold} steps): no blessed model yet")
    if warm_steps <= 0:
        return Start(cold, False, f"trained from scratch ({cold} steps): warm start is off")
    source = weights_path(fn_args.base_model)
    if not tf.io.gfile.exists(source):
        return Start(
            cold, False, f"trained from scratch ({cold} steps): the blessed model has no warm-start weights"
        )
    base_transform = transform_path(fn_args.base_model)
    if not tf.io.gfile.exists(posixpath.join(base_transform, TRANSFORM_PARTS[0])):
        return Start(
            cold, False, f"trained from scratch ({cold} steps): the blessed model keeps no transform graph"
        )
    if transform_digest(base_transform) != transform_digest(fn_args.transform_output):
        return Start(
            cold,
            False,
            f"trained from scratch ({cold} steps): the window was analyzed afresh, and the blessed model's "
            "weights were trained on other vocabularies and scales",
        )
    with tempfile.TemporaryDirectory(prefix="tfx-canary-weights-") as scratch:
        local = os.path.join(scratch, WEIGHTS_FILE)
        tf.io.gfile.copy(source, local)
        try:
            model.load_weights(local)
        except (ValueError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return Start(
                cold,
                False,
                f"trained from scratch ({cold} steps): the blessed model's weights do not fit: {first_line}",
            )
    steps = min(warm_steps, cold)
    return Start(steps, True, f"warm start from the blessed model's weights ({steps} steps)")


def write_report(fn_args, begun: Start) -> None:
    """What the run started from, in the Trainer's ``model_run`` output (the run summary reads it)."""
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(posixpath.join(fn_args.model_run_dir, REPORT_FILE), "w") as handle:
        handle.write(json.dumps(asdict(begun), sort_keys=True))


def read_report(model_run_uri: str) -> Start | None:
    path = posixpath.join(model_run_uri, REPORT_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return Start(**json.loads(handle.read()))
