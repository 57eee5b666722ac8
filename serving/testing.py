"""Fixture SavedModels in the shape of TF Serving's half_plus_two testdata, built with TF2.

``write_fixture_model(base, 1, offset=2.0)`` and ``write_fixture_model(base, 2, offset=3.0)`` give two
versions of one model whose answers differ (x=2.0 gives 3.0 from v1, 4.0 from v2), so label routing is
visible in the numbers. Every version has the signatures TF Serving's own tests call:

- ``serving_default``: float ``x`` of shape [None] -> ``y`` = 0.5x + offset (predict)
- ``classify_x_to_y``: serialized tf.Examples ``inputs`` with float feature ``x`` -> ``scores`` [N, 1]
- ``regress_x_to_y``: serialized tf.Examples ``inputs`` with float feature ``x`` -> ``outputs`` [N, 1]

The model is written to a non-numeric sibling first and renamed, so a watching server never sees half a
version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _build_module(offset: float):
    import tensorflow as tf

    class HalfPlusOffset(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5, dtype=tf.float32, name="a")
            self.b = tf.Variable(offset, dtype=tf.float32, name="b")

        def _from_examples(self, serialized):
            features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            return self.a * features["x"] + self.b

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            return {"scores": self._from_examples(inputs)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": self._from_examples(inputs)}

    return HalfPlusOffset()


def write_fixture_model(base_path: str | os.PathLike, version: int, offset: float = 2.0) -> Path:
    """Write y = 0.5x + offset as ``<base_path>/<version>`` and return that directory."""
    import tensorflow as tf

    from pipeline.publish import write_local_version

    module = _build_module(float(offset))
    signatures = {
        "serving_default": module.predict,
        "classify_x_to_y": module.classify,
        "regress_x_to_y": module.regress,
    }
    return Path(
        write_local_version(
            base_path, version, lambda staging: tf.saved_model.save(module, staging, signatures=signatures)
        )
    )


def write_broken_model(base_path: str | os.PathLike, version: int) -> Path:
    """A version directory whose saved_model.pb is garbage: loading it fails, as a half copy would."""
    final = Path(base_path) / str(int(version))
    final.mkdir(parents=True)
    (final / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return final


def write_warmup_requests(model_dir: str | os.PathLike, prediction_logs: Iterable) -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests``: a TFRecord of PredictionLog protos."""
    import tensorflow as tf

    path = Path(model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in prediction_logs:
            writer.write(log.SerializeToString())
    return path


def predict_warmup_log(values: list[float], signature_name: str = "serving_default"):
    """One PredictionLog replaying a predict of ``x = values`` (the format TF Serving warms up with)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float32))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_string_model(base_path: str | os.PathLike, version: int) -> Path:
    """A string model: ``text`` -> ``echo_bytes`` (same bytes; TF Serving returns it as b64) and ``upper``."""
    import tensorflow as tf

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def echo(self, text):
            return {"echo_bytes": text, "upper": tf.strings.upper(text)}

    final = Path(base_path) / str(int(version))
    staging = Path(base_path) / f".{int(version)}.tmp"
    module = Echo()
    tf.saved_model.save(module, str(staging), signatures={"serving_default": module.echo})
    os.rename(staging, final)
    return final


def write_model_config(path: str | os.PathLike, models: dict[str, dict]) -> Path:
    """Write a models.config (text ModelServerConfig) atomically.

    ``models`` maps a name to ``{"base_path": ..., "versions": [..] (specific) or "all": True,
    "labels": {label: version}}``; without versions/all the policy is TF Serving's default (latest 1).
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, spec in models.items():
        model = config.model_config_list.config.add(name=name, base_path=str(spec["base_path"]))
        model.model_platform = "tensorflow"
        if spec.get("versions"):
            model.model_version_policy.specific.versions.extend(spec["versions"])
        elif spec.get("all"):
            model.model_version_policy.all.SetInParent()
        for label, version in spec.get("labels", {}).items():
            model.version_labels[label] = version
    target = Path(path)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_text(text_format.MessageToString(config))
    os.replace(staging, target)
    return target


CONTRACT_MODEL = "half_plus"
CONTRACT_STRING_MODEL = "echo"


def write_contract_fixtures(root: str | os.PathLike) -> Path:
    """Models and models.config for the contract suite; point any server (ours or TF Serving) at it.

    ``half_plus`` has version 1 (y = 0.5x + 2, label ``stable``) and version 2 (y = 0.5x + 3, label
    ``canary``); ``echo`` is the string model. Start the server with
    ``--allow_version_labels_for_unavailable_models=true --model_config_file=<returned path>``.
    """
    root = Path(root)
    write_fixture_model(root / CONTRACT_MODEL, 1, offset=2.0)
    write_fixture_model(root / CONTRACT_MODEL, 2, offset=3.0)
    write_string_model(root / CONTRACT_STRING_MODEL, 1)
    return write_model_config(
        root / "models.config",
        {
            CONTRACT_MODEL: {
                "base_path": root.resolve() / CONTRACT_MODEL,
                "versions": [1, 2],
                "labels": {"stable": 1, "canary": 2},
            },
            CONTRACT_STRING_MODEL: {"base_path": root.resolve() / CONTRACT_STRING_MODEL},
        },
    )
