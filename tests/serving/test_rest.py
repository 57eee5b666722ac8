"""REST transport details: size limits, gzip, keep-alive, headers, JSON edge cases, bad dtypes."""

from __future__ import annotations

import gzip
import http.client
import json

import pytest

from serving.options import REST_API_SERVERS
from tests.serving.conftest import http_request, start_server

PREDICT = "/v1/models/half_plus/versions/1:predict"


@pytest.fixture(scope="module", params=REST_API_SERVERS)
def server(request, contract_root):
    """The same REST behaviour from every HTTP carrier (``--rest_api_server``)."""
    with start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
        rest_api_max_request_bytes=4096,
        rest_api_server=request.param,
    ) as running:
        yield running


def test_json_content_type_on_every_answer(server):
    for path, body in ((PREDICT, {"instances": [1.0]}), ("/v1/models/nope:predict", {"instances": [1.0]})):
        _status, headers, _body = http_request(server.rest_port, "POST", path, body)
        assert headers["Content-Type"] == "application/json"


def test_body_over_the_limit_is_413_without_reading_it(server):
    body = json.dumps({"instances": [1.0] * 2000})
    status, _h, answer = http_request(server.rest_port, "POST", PREDICT, body)
    assert status == 413
    assert "exceeds the limit of 4096 bytes" in answer["error"]


def test_gzip_bodies_are_accepted_and_bombs_are_413(server):
    packed = gzip.compress(json.dumps({"instances": [2.0]}).encode())
    status, _h, answer = http_request(server.rest_port, "POST", PREDICT, packed, {"Content-Encoding": "gzip"})
    assert (status, answer) == (200, {"predictions": [3.0]})
    bomb = gzip.compress(b" " * 1_000_000)  # small on the wire, 1 MB inflated
    status, _h, answer = http_request(server.rest_port, "POST", PREDICT, bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "Decompressed request body exceeds" in answer["error"]
    status, _h, answer = http_request(
        server.rest_port, "POST", PREDICT, b"not gzip", {"Content-Encoding": "gzip"}
    )
    assert status == 400 and "gzip" in answer["error"]


def test_keep_alive_serves_many_requests_on_one_connection(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        for x in (1.0, 2.0, 3.0):
            connection.request("POST", PREDICT, body=json.dumps({"instances": [x]}))
            response = connection.getresponse()
            assert json.loads(response.read()) == {"predictions": [0.5 * x + 2.0]}
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [True]}, "Type: Bool is not of expected type: float"),
        ({"instances": [None]}, "is not of expected type: float"),
        ({"instances": [[1.0], [1.0, 2.0]]}, "Expecting tensor size: 1 but got: 2"),
        ({"instances": [{"b64": "aGk="}]}, "is not of expected type: float"),
    ],
)
def test_wrong_dtypes_and_shapes_are_400(server, body, message):
    status, _h, answer = http_request(server.rest_port, "POST", PREDICT, body)
    assert status == 400
    assert message in answer["error"]


def test_nan_and_infinity_pass_through_as_tf_serving_tokens(server):
    status, _h, raw = http_request(
        server.rest_port, "POST", PREDICT, '{"instances": [NaN, Infinity, -Infinity]}'
    )
    assert status == 200
    text = json.dumps(raw)
    assert "NaN" in text and "Infinity" in text and "-Infinity" in text


def test_trailing_data_after_the_first_value_is_ignored_like_rapidjson(server):
    status, _h, answer = http_request(server.rest_port, "POST", PREDICT, '{"instances": [2.0]} trailing')
    assert (status, answer) == (200, {"predictions": [3.0]})


def test_b64_that_is_not_base64_is_400(server):
    status, _h, answer = http_request(
        server.rest_port, "POST", "/v1/models/echo:predict", {"instances": [{"b64": "@@"}]}
    )
    assert status == 400 and "base64" in answer["error"]


def test_classify_feature_typing_follows_tf_serving(server):
    path = "/v1/models/half_plus/versions/1:regress"
    status, _h, answer = http_request(
        server.rest_port, "POST", path, {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, 2]}]}
    )
    assert status == 400 and "Unexpected element type in feature: x" in answer["error"]
    status, _h, answer = http_request(
        server.rest_port, "POST", path, {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]}
    )
    assert status == 400  # an integer becomes int64_list, which the float feature rejects


def test_other_methods_are_malformed_requests(server):
    status, _h, answer = http_request(server.rest_port, "DELETE", "/v1/models/half_plus")
    assert (status, answer) == (400, {"error": "Malformed request: DELETE /v1/models/half_plus"})
