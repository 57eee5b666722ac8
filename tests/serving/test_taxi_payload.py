"""Real-world payloads: the pipeline's two taxi models in one models.config, one server, REST and gRPC.

The models are built here from a few rows (tf.Transform on Beam, one epoch, the real export), so the
requests are the ones a client of the pushed model sends. Every answer is compared with a direct
in-process call of the same SavedModel signature.
"""

from __future__ import annotations

import base64
import json
import math

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fixtures.contract import write_model_config
from fixtures.taxi import raw_rows, serving_raw_inputs, to_example, write_taxi_model
from models import features

from .conftest import http_request, start_server

TIPS, FARE = "taxi_tips", "taxi_fare"
ROWS = 8  # rows 0-7 of the sample lack coordinates, community areas and (some) the company


@pytest.fixture(scope="module")
def taxi(tmp_path_factory, taxi_transforms):
    """Both models exported as version 1 under one serving dir, a server on them, and direct handles."""
    root = tmp_path_factory.mktemp("taxi")
    for model, transform in taxi_transforms.items():
        write_taxi_model(root / "serving" / model, 1, model, transform)
    config = write_model_config(
        root / "models.config", {m: {"base_path": root / "serving" / m} for m in (TIPS, FARE)}
    )
    direct = {m: tf.saved_model.load(str(root / "serving" / m / "1")).signatures for m in (TIPS, FARE)}
    server = start_server(model_config_file=str(config))
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        yield server, prediction_service_pb2_grpc.PredictionServiceStub(channel), direct
    finally:
        channel.close()
        server.stop(grace_seconds=1)


def _rows() -> list[dict]:
    rows = raw_rows(ROWS)
    assert any("company" not in r for r in rows) and any("pickup_latitude" not in r for r in rows)
    return rows


def _direct_default(direct, model: str, rows: list[dict]) -> dict[str, np.ndarray]:
    outputs = direct[model]["serving_default"](examples=tf.constant([to_example(r) for r in rows]))
    return {alias: value.numpy() for alias, value in outputs.items()}


def _post(server, path: str, body: dict):
    # allow_nan: the MISSING float sentinel travels as the bare NaN token TF Serving's parser accepts.
    status, _headers, data = http_request(server.rest_port, "POST", path, json.dumps(body, allow_nan=True))
    assert status == 200, data
    return data


def test_both_models_are_served_from_one_config(taxi):
    server, _stub, _direct = taxi
    for model in (TIPS, FARE):
        status, _headers, data = http_request(server.rest_port, "GET", f"/v1/models/{model}")
        assert status == 200
        assert data["model_version_status"][0]["state"] == "AVAILABLE"


def test_rest_predict_serving_raw_with_missing_features(taxi):
    server, _stub, direct = taxi
    rows = _rows()
    columns = serving_raw_inputs(rows, TIPS)
    assert any(math.isnan(v) for v in columns["pickup_latitude"])
    assert features.MISSING_STRING in columns["company"]
    assert features.MISSING_INT in columns["pickup_community_area"]
    instances = [{key: values[i] for key, values in columns.items()} for i in range(len(rows))]
    data = _post(
        server, f"/v1/models/{TIPS}:predict", {"signature_name": "serving_raw", "instances": instances}
    )
    signature = direct[TIPS]["serving_raw"]
    wanted = signature(**{k: tf.constant(v, features.raw_dtype(k)) for k, v in columns.items()})
    scores = np.array([p["scores"] for p in data["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(scores, wanted["scores"].numpy())
    assert [p["classes"] for p in data["predictions"]] == [["0", "1"]] * len(rows)
    # Sentinels mean "missing": the same rows as tf.Examples without those features score the same.
    np.testing.assert_allclose(scores, _direct_default(direct, TIPS, rows)["scores"], rtol=1e-5)


def test_rest_predict_serving_raw_with_only_the_required_inputs(taxi):
    server, _stub, direct = taxi
    row = {"trip_miles": 2.5, "trip_seconds": 600, "payment_type": "Cash"}
    assert set(row) == set(features.REQUIRED_RAW_INPUTS)
    columns = serving_raw_inputs([row], FARE)
    data = _post(
        server,
        f"/v1/models/{FARE}:predict",
        {"signature_name": "serving_raw", "inputs": columns},  # the columnar format
    )
    wanted = direct[FARE]["serving_raw"](
        **{k: tf.constant(v, features.raw_dtype(k)) for k, v in columns.items()}
    )
    np.testing.assert_array_equal(np.float32(data["outputs"]), wanted["outputs"].numpy())


def test_rest_predict_serving_default_with_b64_examples(taxi):
    server, _stub, direct = taxi
    rows = _rows()
    instances = [{"b64": base64.b64encode(to_example(r)).decode("ascii")} for r in rows]
    data = _post(server, f"/v1/models/{TIPS}:predict", {"instances": instances})
    wanted = _direct_default(direct, TIPS, rows)
    scores = np.array([p["scores"] for p in data["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(scores, wanted["scores"])


def test_rest_classify_with_json_examples_and_context(taxi):
    server, _stub, direct = taxi
    rows = _rows()
    shared = {"trip_start_month": rows[0]["trip_start_month"]}
    examples = [{k: v for k, v in r.items() if k not in shared} for r in rows]
    data = _post(server, f"/v1/models/{TIPS}:classify", {"context": shared, "examples": examples})
    wanted = _direct_default(direct, TIPS, [dict(r, **shared) for r in rows])["scores"]
    assert [[label for label, _score in result] for result in data["results"]] == [["0", "1"]] * len(rows)
    scores = np.array([[score for _label, score in result] for result in data["results"]], dtype=np.float32)
    np.testing.assert_array_equal(scores, wanted)


def test_rest_regress_on_the_fare_model(taxi):
    server, _stub, direct = taxi
    rows = _rows()
    data = _post(server, f"/v1/models/{FARE}:regress", {"examples": rows})
    wanted = _direct_default(direct, FARE, rows)["outputs"]
    np.testing.assert_array_equal(np.float32(data["results"]), wanted)
    assert len(set(data["results"])) > 1  # distinct trips, distinct fares: the features reach the model


def _example_input(target, rows: list[dict]) -> None:
    for row in rows:
        target.example_list.examples.add().ParseFromString(to_example(row))


def test_grpc_classify_and_predict_on_the_classifier(taxi):
    _server, stub, direct = taxi
    rows = _rows()
    wanted = _direct_default(direct, TIPS, rows)

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = TIPS
    _example_input(request.input, rows)
    response = stub.Classify(request, 30)
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    got = np.array(
        [[c.score for c in row.classes] for row in response.result.classifications], dtype=np.float32
    )
    np.testing.assert_array_equal(got, wanted["scores"])
    assert [c.label for c in response.result.classifications[0].classes] == ["0", "1"]

    request = predict_pb2.PredictRequest()
    request.model_spec.name = TIPS
    request.model_spec.signature_name = "serving_raw"
    columns = serving_raw_inputs(rows, TIPS)
    for key, values in columns.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=features.raw_dtype(key)))
    response = stub.Predict(request, 30)
    assert response.model_spec.signature_name == "serving_raw"
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), wanted["scores"], rtol=1e-5)
    assert tf.make_ndarray(response.outputs["classes"]).tolist() == [[b"0", b"1"]] * len(rows)


def test_grpc_regress_on_the_fare_model(taxi):
    _server, stub, direct = taxi
    rows = _rows()
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = FARE
    _example_input(request.input, rows)
    response = stub.Regress(request, 30)
    assert response.model_spec.name == FARE and response.model_spec.version.value == 1
    got = np.array([r.value for r in response.result.regressions], dtype=np.float32)
    np.testing.assert_array_equal(got, _direct_default(direct, FARE, rows)["outputs"])
