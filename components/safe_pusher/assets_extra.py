"""The ``assets.extra`` files a pushed version carries, built from the run's own artifacts.

- ``tf_serving_warmup_requests``: the requests the load check replayed on the candidate (real eval
  examples on every signature), which TF Serving replays at load so no signature's first client request
  pays for its warm-up;
- ``mlmd_uuid``: which MLMD model artifact and pipeline run made the version, so serving metrics can
  be joined to the lineage.
"""

from __future__ import annotations

import posixpath

import tensorflow as tf

from components.load_check.executor import WARMUP_BLESSING_FILE


def warmup_from(infra_blessing_uri: str) -> bytes | None:
    """The warm-up file the load check wrote next to its blessing (None: it wrote none)."""
    path = posixpath.join(infra_blessing_uri, WARMUP_BLESSING_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def mlmd_uuid(model_artifact_id: int, pipeline_name: str, run_id: str | None) -> bytes:
    """The text TF Serving exports as the model's MLMD key: which artifact and which run made it."""
    return f"pipeline={pipeline_name};model_id={model_artifact_id};run_id={run_id or 'unknown'}\n".encode()
