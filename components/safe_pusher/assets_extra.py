"""The ``assets.extra`` files a pushed version carries, built from the run's own artifacts.

- ``tf_serving_warmup_requests``: real eval examples as ``PredictRequest``s on ``serving_default``, which
  TF Serving replays at load so the first client request does not pay for graph warm-up;
- ``mlmd_uuid``: which MLMD model artifact and pipeline run made the version, so serving metrics can
  be joined to the lineage.
"""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf


def warmup_records(examples_uri: str, count: int, split: str = "eval") -> bytes:
    """A TFRecord file body of ``PredictionLog``s: ``count`` serialized examples from ``split``."""
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri} to build warm-up requests from")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    serialized = [record.numpy() for record in dataset]
    with tempfile.TemporaryDirectory(prefix="tfx-canary-warmup-") as scratch:
        temp = os.path.join(scratch, "warmup.tfrecord")
        _write_prediction_logs(temp, serialized)
        with open(temp, "rb") as handle:
            return handle.read()


def _write_prediction_logs(path: str, serialized: list[bytes]) -> None:
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for example in serialized:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default")
            )
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string, shape=[1]))
            log_record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log_record.SerializeToString())


def mlmd_uuid(model_artifact_id: int, pipeline_name: str, run_id: str | None) -> bytes:
    """The text TF Serving exports as the model's MLMD key: which artifact and which run made it."""
    return f"pipeline={pipeline_name};model_id={model_artifact_id};run_id={run_id or 'unknown'}\n".encode()
