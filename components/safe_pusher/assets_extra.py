"""The ``assets.extra`` files a pushed version carries, built from the run's own artifacts.

- ``tf_serving_warmup_requests``: real eval examples as ``PredictRequest``s on every signature of the
  model (serialized examples, or their features as named tensors), which TF Serving replays at load so
  no signature's first client request pays for its warm-up;
- ``mlmd_uuid``: which MLMD model artifact and pipeline run made the version, so serving metrics can
  be joined to the lineage.
"""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf

from release.serving_dir import MAX_WARMUP_RECORDS

# What a named-tensor input gets where an example has no value (the raw-features signature's markers).
MISSING = {tf.float32: float("nan"), tf.float64: float("nan"), tf.int64: -1, tf.int32: -1, tf.string: b""}


def warmup_records(examples_uri: str, count: int, model_dir: str | None = None, split: str = "eval") -> bytes:
    """A TFRecord file body of ``PredictionLog``s: ``count`` real examples from ``split`` replayed on
    every signature of the model at ``model_dir`` (serialized examples, or their features as named
    tensors), so no signature's first client call pays for its warm-up; at most TF Serving's 1,000.

    Without ``model_dir``: ``serving_default`` with serialized examples only.
    """
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri} to build warm-up requests from")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    serialized = [record.numpy() for record in dataset]
    signatures = _signature_inputs(model_dir) if model_dir else {"serving_default": None}
    requests = [r for name, inputs in signatures.items() for r in _requests(name, inputs, serialized)]
    with tempfile.TemporaryDirectory(prefix="tfx-canary-warmup-") as scratch:
        temp = os.path.join(scratch, "warmup.tfrecord")
        _write_prediction_logs(temp, requests[:MAX_WARMUP_RECORDS])
        with open(temp, "rb") as handle:
            return handle.read()


def _signature_inputs(model_dir: str) -> dict[str, dict[str, tf.TensorSpec] | None]:
    """Signature name -> its named inputs, or None for one that takes serialized examples."""
    loaded = tf.saved_model.load(model_dir)
    found: dict[str, dict[str, tf.TensorSpec] | None] = {}
    for name, function in sorted(loaded.signatures.items(), key=lambda item: item[0] != "serving_default"):
        inputs = function.structured_input_signature[1]
        takes_examples = (
            len(inputs) == 1
            and next(iter(inputs.values())).dtype == tf.string
            and (next(iter(inputs)) in ("examples", "inputs"))
        )
        found[name] = None if takes_examples else dict(inputs)
    return found


def _requests(signature: str, inputs: dict[str, tf.TensorSpec] | None, serialized: list[bytes]) -> list:
    from tensorflow_serving.apis import model_pb2, predict_pb2

    requests = []
    if inputs is None:
        for example in serialized:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string, shape=[1]))
            requests.append(request)
        return requests
    if any(spec.dtype not in MISSING or spec.shape.rank != 1 for spec in inputs.values()):
        return []  # not a batch of scalars per input: no generic way to fill it from an example
    spec = {
        name: tf.io.FixedLenFeature([], s.dtype, default_value=MISSING[s.dtype]) for name, s in inputs.items()
    }
    for example in serialized:
        try:
            parsed = tf.io.parse_example([example], spec)
        except tf.errors.InvalidArgumentError:  # e.g. a feature stored with another type
            continue
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
        for name, value in parsed.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy(), dtype=inputs[name].dtype))
        requests.append(request)
    return requests


def _write_prediction_logs(path: str, requests: list) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log_record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log_record.SerializeToString())


def mlmd_uuid(model_artifact_id: int, pipeline_name: str, run_id: str | None) -> bytes:
    """The text TF Serving exports as the model's MLMD key: which artifact and which run made it."""
    return f"pipeline={pipeline_name};model_id={model_artifact_id};run_id={run_id or 'unknown'}\n".encode()
