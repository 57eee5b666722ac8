"""Warm start: a retrain begins from the latest blessed model's weights and trains fewer steps.

The Trainer gets the blessed model the Evaluator compares against as its ``base_model`` (TFX's own
channel). ``export.export_model`` keeps the Keras weights beside every export
(``<model artifact>/warm-start/model.weights.h5``), so ``start`` can load them into the new model.
It trains from scratch, and says why, on a first run (no blessed model), when warm start is off
(``warm_start_steps: 0``), when the blessed model has no weights file, or when its weights do not fit
the new model (another architecture, or a transform graph whose vocabulary changed a layer's shape).
The evaluation is unchanged: candidate and baseline on the same eval data, the same thresholds.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from dataclasses import asdict, dataclass

import tensorflow as tf

WARM_START_STEPS = "warm_start_steps"  # the Trainer's custom_config key (steps of a warm retrain)
WEIGHTS_DIR = "warm-start"
WEIGHTS_FILE = "model.weights.h5"  # Keras 3 wants this suffix
REPORT_FILE = "warm_start.json"  # in the Trainer's model_run output: what this run started from


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
