"""TF Serving's REST and gRPC contract, checked only through the wire, so it can target any server.

Targets: ``embedded`` (our server, started here on the contract fixtures) and ``external``: a real
tensorflow_model_server given by address (skipped, and reported as skipped, without one). To run against
one, write the fixtures with ``python -c "from fixtures.contract import write_contract_fixtures as w;
print(w('/tmp/contract'))"``, start ``tensorflow_model_server --port=8500 --rest_api_port=8501
--allow_version_labels_for_unavailable_models=true --model_config_file=/tmp/contract/models.config``, then
``TFX_CANARY_CONTRACT_REST=127.0.0.1:8501 TFX_CANARY_CONTRACT_GRPC=127.0.0.1:8500 pytest
tests/serving/test_contract.py``. Expected values come from TF Serving's own tests (half_plus_two).
"""

from __future__ import annotations

import json
import os
import urllib.parse

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fixtures.contract import CONTRACT_MODEL as MODEL
from fixtures.contract import CONTRACT_STRING_MODEL as ECHO
from tests.serving.conftest import http_request, start_server

REST_ENV, GRPC_ENV = "TFX_CANARY_CONTRACT_REST", "TFX_CANARY_CONTRACT_GRPC"


class Target:
    def __init__(self, rest: str, grpc_address: str) -> None:
        self.host, port = rest.rsplit(":", 1)
        self.rest_port = int(port)
        self.channel = grpc.insecure_channel(grpc_address)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def rest(self, method: str, path: str, body=None, headers=None):
        status, _headers, data = http_request(self.rest_port, method, path, body, headers)
        return status, data


@pytest.fixture(scope="module", params=["embedded", "embedded-aiohttp", "external"])
def target(request, contract_root):
    if request.param == "external":
        rest, grpc_address = os.environ.get(REST_ENV), os.environ.get(GRPC_ENV)
        if not (rest and grpc_address):
            pytest.skip(f"no external server: set {REST_ENV} and {GRPC_ENV} to a tensorflow_model_server")
        yield Target(rest, grpc_address)
        return
    server = start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
        rest_api_server="aiohttp" if request.param == "embedded-aiohttp" else "threading",
    )
    try:
        yield Target(f"127.0.0.1:{server.rest_port}", f"127.0.0.1:{server.grpc_port}")
    finally:
        server.stop()


def _example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))})
    )


# ---- REST: status and metadata ------------------------------------------------------------------------


def test_status_of_all_versions_has_tf_serving_shape(target):
    status, body = target.rest("GET", f"/v1/models/{MODEL}")
    assert status == 200
    entries = sorted(body["model_version_status"], key=lambda e: e["version"])
    assert entries == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]


def test_status_of_one_version_and_unknowns(target):
    assert (
        target.rest("GET", f"/v1/models/{MODEL}/versions/1")[1]["model_version_status"][0]["version"] == "1"
    )
    assert target.rest("GET", f"/v1/models/{MODEL}/versions/99") == (
        404,
        {"error": f"Could not find version 99 of model {MODEL}"},
    )
    assert target.rest("GET", "/v1/models/nope") == (
        404,
        {"error": "Could not find any versions of model nope"},
    )


def test_metadata_describes_latest_version_with_proto_field_names(target):
    status, body = target.rest("GET", f"/v1/models/{MODEL}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(signatures)
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"


def test_metadata_by_label_and_unknown_model(target):
    assert target.rest("GET", f"/v1/models/{MODEL}/labels/stable/metadata")[1]["model_spec"]["version"] == "1"
    assert target.rest("GET", "/v1/models/nope/metadata") == (
        404,
        {"error": "Servable not found for request: Latest(nope)"},
    )


# ---- REST: predict, classify, regress ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            f"/v1/models/{MODEL}/versions/1:predict",
            {"instances": [2.0, 3.0, 4.0]},
            {"predictions": [3.0, 3.5, 4.0]},
        ),
        (f"/v1/models/{MODEL}/versions/1:predict", {"inputs": [2.0, 3.0, 4.0]}, {"outputs": [3.0, 3.5, 4.0]}),
        (f"/v1/models/{MODEL}/labels/stable:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
        (f"/v1/models/{MODEL}/labels/canary:predict", {"instances": [2.0]}, {"predictions": [4.0]}),
        (f"/v1/models/{MODEL}:predict", {"instances": [2.0]}, {"predictions": [4.0]}),  # highest version
        (f"/v1/models/{MODEL}/versions/1:predict", {"instances": [{"x": 2.0}]}, {"predictions": [3.0]}),
        (f"/v1/models/{MODEL}/versions/1:predict", {"inputs": {"x": [2.0]}}, {"outputs": [3.0]}),
        (f"/v1/models/{MODEL}/versions/1:predict", {"instances": [2]}, {"predictions": [3.0]}),
        (
            f"/v1/models/{MODEL}/versions/1:predict",
            {"signature_name": "serving_default", "instances": [3.0, 4.0]},
            {"predictions": [3.5, 4.0]},
        ),
        (f"/v1/models/{MODEL}/versions/1:predict", {"instances": [0.1]}, {"predictions": [2.05]}),
    ],
)
def test_predict(target, path, body, expected):
    assert target.rest("POST", path, body) == (200, expected)


def test_classify_and_regress_use_results_key(target):
    classify = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 80.0}]}
    assert target.rest("POST", f"/v1/models/{MODEL}/versions/1:classify", classify) == (
        200,
        {"results": [[["", 3.0]]]},
    )
    assert target.rest("POST", f"/v1/models/{MODEL}/versions/1:regress", regress) == (
        200,
        {"results": [3.0, 42.0]},
    )
    assert target.rest("POST", f"/v1/models/{MODEL}/labels/canary:regress", regress) == (
        200,
        {"results": [4.0, 43.0]},
    )


def test_classify_context_is_merged_into_each_example(target):
    body = {"signature_name": "regress_x_to_y", "context": {"x": 10.0}, "examples": [{}, {"x": 20.0}]}
    assert target.rest("POST", f"/v1/models/{MODEL}/versions/1:regress", body) == (
        200,
        {"results": [7.0, 12.0]},
    )


def test_b64_strings_in_and_out(target):
    status, body = target.rest("POST", f"/v1/models/{ECHO}:predict", {"instances": [{"b64": "aGk="}, "yo"]})
    assert status == 200
    assert body == {
        "predictions": [
            {"echo_bytes": {"b64": "aGk="}, "upper": "HI"},
            {"echo_bytes": {"b64": "eW8="}, "upper": "YO"},
        ]
    }
    status, body = target.rest("POST", f"/v1/models/{ECHO}:predict", {"inputs": ["ab"]})
    assert body == {"outputs": {"echo_bytes": [{"b64": "YWI="}], "upper": ["AB"]}}


# ---- REST: errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        (
            "POST",
            "/v1/models/nope:predict",
            {"instances": [1.0]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}/versions/99:predict",
            {"instances": [1.0]},
            404,
            f"Servable not found for request: Specific({MODEL}, 99)",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}/labels/nope:predict",
            {"instances": [1.0]},
            400,
            "Unrecognized servable version label: nope",
        ),
        ("POST", f"/v1/models/{MODEL}:predict", "", 400, "JSON Parse error: The document is empty"),
        ("POST", f"/v1/models/{MODEL}:predict", "{not json", 400, "JSON Parse error"),
        ("POST", f"/v1/models/{MODEL}:predict", "[1, 2]", 400, "Is not object"),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"instances": [1.0], "inputs": [1.0]},
            400,
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist",
        ),
        ("POST", f"/v1/models/{MODEL}:predict", {"foo": 1}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", f"/v1/models/{MODEL}:predict", {"instances": []}, 400, "No values in 'instances' array"),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"instances": 1.0},
            400,
            "Expecting 'instances' to be an list/array",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"instances": ["x", "y"]},
            400,
            "is not of expected type: float",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"instances": [{"y": 1.0}]},
            400,
            "does not have named input: y",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"inputs": {"y": [1.0]}},
            400,
            "Missing named input: x in 'inputs' object.",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"signature_name": 100, "instances": [1.0]},
            400,
            "'signature_name' key must be a string value.",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"signature_name": "foo", "instances": [1.0]},
            400,
            'Serving signature name: "foo" not found in signature def',
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:classify",
            {"signature_name": "classify_x_to_y"},
            400,
            "When method is classify, key 'examples' is expected and was not found",
        ),
        (
            "POST",
            f"/v1/models/{MODEL}:regress",
            {"signature_name": "regress_x_to_y", "examples": []},
            400,
            "'examples' value is an empty array",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
        ("GET", "/v1/models/foo:predict", None, 400, "Malformed request"),
        ("POST", f"/v1/models/{MODEL}/metadata", {}, 400, "Malformed request"),
        ("POST", f"/v1/models/{MODEL}/version/1:regress", {}, 400, "Malformed request"),
        ("POST", f"/v1/models/{MODEL}/versions/HELLO:regress", {}, 400, "Malformed request"),
        ("POST", f"/v1/models/{MODEL}/versions/1/labels/stable:regress", {}, 400, "Malformed request"),
        (
            "POST",
            f"/v1/models/{MODEL}/versions/99999999999999999999:predict",
            {},
            400,
            "Failed to convert version",
        ),
    ],
)
def test_rest_errors(target, method, path, body, status, message):
    got_status, got = target.rest(method, path, body)
    assert got_status == status
    assert message in got["error"]


def test_unknown_model_with_malformed_body_is_400_because_the_body_is_parsed_first(target):
    status, body = target.rest("POST", "/v1/models/nope:predict", "{bad")
    assert status == 400 and "JSON Parse error" in body["error"]


@pytest.mark.parametrize("name", ["..", "../../etc/passwd", "%2E%2E%2F%2E%2E%2Fetc", f"..%2F{MODEL}", "/tmp"])
def test_path_traversal_in_model_names_finds_nothing(target, name):
    status, body = target.rest(
        "POST", f"/v1/models/{urllib.parse.quote(name, safe='%')}:predict", {"instances": [1.0]}
    )
    assert status in (400, 404)
    assert "error" in body


def test_paths_outside_v1_are_plain_404(target):
    status, _data = target.rest("GET", "/index.html")
    assert status == 404


# ---- gRPC ----------------------------------------------------------------------------------------------


def _predict(x, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", MODEL)
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x, dtype=tf.float32))
    return request


@pytest.mark.parametrize(
    ("spec", "version", "y"),
    [({}, 2, 4.0), ({"version": 1}, 1, 3.0), ({"label": "stable"}, 1, 3.0), ({"label": "canary"}, 2, 4.0)],
)
def test_grpc_predict_echoes_the_version_used(target, spec, version, y):
    response = target.predictions.Predict(_predict([2.0], **spec), 10)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [y]
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == version
    assert response.model_spec.signature_name == "serving_default"


def test_grpc_predict_output_filter_and_errors(target):
    request = _predict([2.0], version=1)
    request.output_filter.append("y")
    assert list(target.predictions.Predict(request, 10).outputs) == ["y"]
    cases = [
        (_predict([1.0], name="intentionally_missing_model"), grpc.StatusCode.NOT_FOUND, "Servable"),
        (_predict([1.0], version=99), grpc.StatusCode.NOT_FOUND, f"Specific({MODEL}, 99)"),
        (
            _predict([1.0], label="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Unrecognized servable version label: nope",
        ),
    ]
    bad_filter = _predict([1.0])
    bad_filter.output_filter.append("z")
    cases.append(
        (bad_filter, grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: z")
    )
    for request, code, text in cases:
        with pytest.raises(grpc.RpcError) as raised:
            target.predictions.Predict(request, 10)
        assert raised.value.code() == code
        assert text in raised.value.details()


def test_grpc_classify_regress_and_multi_inference(target):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = MODEL
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(_example(2.0))
    result = target.predictions.Classify(classify, 10)
    assert [c.score for c in result.result.classifications[0].classes] == [4.0]
    assert result.model_spec.version.value == 2 and result.model_spec.signature_name == "classify_x_to_y"

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = MODEL
    regress.model_spec.version_label = "stable"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.extend([_example(2.0), _example(4.0)])
    assert [r.value for r in target.predictions.Regress(regress, 10).result.regressions] == [3.0, 4.0]

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name = MODEL
        task.model_spec.version.value = 1
        task.model_spec.signature_name = signature
    multi.input.example_list.examples.append(_example(2.0))
    results = target.predictions.MultiInference(multi, 10).results
    assert results[0].regression_result.regressions[0].value == 3.0
    assert results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert results[0].model_spec.version.value == 1


def test_grpc_metadata_and_status(target):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = target.predictions.GetModelMetadata(request, 10)
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["regress_x_to_y"].outputs["outputs"].dtype == tf.float32.as_datatype_enum
    with pytest.raises(grpc.RpcError) as raised:
        target.predictions.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(model_spec=request.model_spec), 10
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status_request.model_spec.version.value = 1
    (entry,) = target.models.GetModelStatus(status_request, 10).model_version_status
    assert (entry.version, entry.state, entry.status.error_code) == (
        1,
        get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        0,
    )


def test_rest_and_grpc_agree(target):
    xs = [-1.5, 0.0, 7.25]
    _status, rest = target.rest("POST", f"/v1/models/{MODEL}/labels/canary:predict", {"instances": xs})
    grpc_values = tf.make_ndarray(
        target.predictions.Predict(_predict(xs, label="canary"), 10).outputs["y"]
    ).tolist()
    assert rest["predictions"] == grpc_values == [0.5 * x + 3.0 for x in xs]
    assert json.dumps(rest)  # strict JSON here: no NaN/Infinity tokens for finite outputs
