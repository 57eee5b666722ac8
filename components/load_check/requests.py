"""The requests a candidate is checked with and later warmed up with: real examples as
``PredictRequest``s on every serving signature, stored as TF Serving's warm-up file.

One set of requests serves both jobs: the load check replays them on the candidate, and the pushed
version carries the same file as ``assets.extra/tf_serving_warmup_requests`` (TF Serving replays at
most 1,000 records of it at load).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile

import tensorflow as tf

from release.serving_dir import MAX_WARMUP_RECORDS
from serving.servable import is_serving_signature, read_signature_defs

# What a named-tensor input gets where an example has no value (the raw-features signature's markers).
MISSING = {tf.float32: float("nan"), tf.float64: float("nan"), tf.int64: -1, tf.int32: -1, tf.string: b""}


def build_requests(examples_uri: str, count: int, model_dir: str, split: str = "eval") -> list:
    """``count`` real examples from ``split`` as ``PredictRequest``s on every signature of the model at
    ``model_dir`` (serialized examples, or their features as named tensors); at most 1,000 in all."""
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri} to build requests from")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    serialized = [record.numpy() for record in dataset]
    requests = [
        r for name, inputs in signature_inputs(model_dir).items() for r in _requests(name, inputs, serialized)
    ]
    return requests[:MAX_WARMUP_RECORDS]


def signature_inputs(model_dir: str) -> dict[str, dict[str, tf.TensorSpec] | None]:
    """Signature name -> its named inputs, or None for one that takes serialized examples; read from
    the SignatureDefs in ``saved_model.pb`` (loading the model to learn them cost 0.6 s a retrain)."""
    found: dict[str, dict[str, tf.TensorSpec] | None] = {}
    defs = read_signature_defs(model_dir)
    for name, signature_def in sorted(defs.items(), key=lambda item: item[0] != "serving_default"):
        if not is_serving_signature(name, signature_def):
            continue
        inputs = {
            alias: tf.TensorSpec(tf.TensorShape(info.tensor_shape), tf.dtypes.as_dtype(info.dtype), alias)
            for alias, info in signature_def.inputs.items()
        }
        takes_examples = (
            len(inputs) == 1
            and next(iter(inputs.values())).dtype == tf.string
            and (next(iter(inputs)) in ("examples", "inputs"))
        )
        found[name] = None if takes_examples else inputs
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
            parsed = tf.io.parse_example([_without_empty_features(example)], spec)
        except tf.errors.InvalidArgumentError:  # e.g. a feature stored with another type
            continue
        request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
        for name, value in parsed.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value.numpy(), dtype=inputs[name].dtype))
        requests.append(request)
    return requests


def _without_empty_features(serialized: bytes) -> bytes:
    """The example with its empty features dropped: CsvExampleGen writes an empty CSV cell as a feature
    with no values, which ``parse_example`` refuses for a scalar; a dropped one gets the missing marker."""
    example = tf.train.Example.FromString(serialized)
    features = example.features.feature
    for name in [name for name, value in features.items() if not _has_values(value)]:
        del features[name]
    return example.SerializeToString()


def _has_values(feature: tf.train.Feature) -> bool:
    kind = feature.WhichOneof("kind")
    return kind is not None and len(getattr(feature, kind).value) > 0


def to_warmup_file(requests: list) -> bytes:
    """TF Serving's warm-up file body: a TFRecord of ``PredictionLog``s, one per request."""
    from tensorflow_serving.apis import prediction_log_pb2

    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warm-up requests; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    with tempfile.TemporaryDirectory(prefix="tfx-canary-warmup-") as scratch:
        path = os.path.join(scratch, "warmup.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for request in requests:
                record = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(record.SerializeToString())
        with open(path, "rb") as handle:
            return handle.read()


def from_warmup_file(path: str) -> list:
    """The ``PredictRequest``s of a warm-up file (``to_warmup_file``'s inverse)."""
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset([path]):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") == "predict_log":
            requests.append(log.predict_log.request)
    return requests


def rest_body(request) -> bytes:
    """The REST ``:predict`` body equal to a gRPC ``PredictRequest``: columnar ``inputs``, bytes as
    ``{"b64": ...}``, NaN as the bare token TF Serving's parser accepts."""
    inputs = {name: _json_value(tf.make_ndarray(proto).tolist()) for name, proto in request.inputs.items()}
    body = {"signature_name": request.model_spec.signature_name or "serving_default", "inputs": inputs}
    return json.dumps(body).encode()


def _json_value(value):
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value
