"""Issue 15, deviations 1 and 2, over REST (row and columnar) and gRPC, with TF Serving's own answers.

- Request shapes are not compared with the SignatureDef's TensorInfo (``predict_util.cc``): TF Serving's
  quickstart ``{"instances": [1.0, 2.0, 5.0]}`` on half_plus_two (``x`` is [-1, 1]) answers
  ``{"predictions": [2.5, 3.0, 4.5]}``; a shape the graph cannot take gets TensorFlow's own error.
- TF1-era SavedModels whose TensorInfos carry no shapes (``saved_model_half_plus_three``, ParseExample
  in the graph) load, through a TF1 session as in TF Serving, for predict, classify, regress and
  MultiInference.

The models are written here with ``tf.compat.v1`` graph building, in the shape of TF Serving's testdata.
"""

from __future__ import annotations

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fixtures.contract import write_model_config
from fixtures.models import write_matmul_model, write_tf1_half_plus_model
from tests.serving.conftest import http_request, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory, contract_root):
    root = tmp_path_factory.mktemp("tf_serving_inputs")
    write_tf1_half_plus_model(root / "half_plus_two", 123, offset=2.0)
    write_tf1_half_plus_model(root / "half_plus_three", 123, offset=3.0, tensor_info_shapes=False)
    write_matmul_model(root / "matmul", 1)
    config = write_model_config(
        root / "models.config",
        {
            "half_plus_two": {"base_path": root / "half_plus_two"},
            "half_plus_three": {"base_path": root / "half_plus_three"},
            "matmul": {"base_path": root / "matmul"},
            "half_plus": {"base_path": contract_root / "half_plus", "versions": [1]},
        },
    )
    with start_server(model_config_file=str(config)) as server:
        yield server


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def rest(server, path: str, body) -> tuple[int, object]:
    status, _headers, answer = http_request(server.rest_port, "POST", path, body)
    return status, answer


def _predict(model: str, values, dtype=tf.float32, signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def _examples(request, *xs: float) -> None:
    for x in xs:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)


# ---- 1. shapes are the graph's business, not the TensorInfo's ------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instances": [1.0, 2.0, 5.0]}, {"predictions": [2.5, 3.0, 4.5]}),  # TF Serving's quickstart
        ({"inputs": [1.0, 2.0, 5.0]}, {"outputs": [2.5, 3.0, 4.5]}),
        ({"instances": [[1.0], [2.0], [5.0]]}, {"predictions": [[2.5], [3.0], [4.5]]}),
        ({"inputs": {"x": [[1.0, 2.0]]}}, {"outputs": [[2.5, 3.0]]}),
    ],
)
def test_rest_predict_takes_any_shape_the_graph_takes(server, body, expected):
    assert rest(server, "/v1/models/half_plus_two:predict", body) == (200, expected)


def test_rest_predict_on_a_tf2_model_takes_a_rank_its_signature_does_not_declare(server):
    # half_plus's signature declares x as [None]; TF Serving runs [[1, 2]] through 0.5x + 2 all the same.
    assert rest(server, "/v1/models/half_plus:predict", {"instances": [[1.0, 2.0]]}) == (
        200,
        {"predictions": [[2.5, 3.0]]},
    )


def test_grpc_predict_takes_any_shape_the_graph_takes(stub):
    response = stub.Predict(_predict("half_plus_two", [1.0, 2.0, 5.0]), 10)
    y = response.outputs["y"]
    assert [d.size for d in y.tensor_shape.dim] == [3]
    assert list(y.float_val) == [2.5, 3.0, 4.5]  # AsProtoField, TF Serving's default encoding
    assert y.tensor_content == b""
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def _kernel_message(model_dir, value) -> str:
    """The message TensorFlow's MatMul kernel gives for ``value`` when the SavedModel in ``model_dir``
    runs in this process. Its wording depends on the CPU the kernel was picked for ("In[0] ndims must
    be >= 2" on an AVX-512 EPYC, "In[0] and In[1] has different ndims: [2] vs. [2,1]" on an earlier
    machine), so it is read here, not written."""
    function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        function(x=tf.constant(value))
    eager_lines = ("Graph execution", "Detected at node", "<stack traces")
    lines = raised.value.message.split("\n")
    kernel = next(line for line in lines if line and not line.startswith(eager_lines))
    assert kernel and "[Op:" not in kernel
    return kernel


def test_a_shape_the_graph_cannot_take_gets_tensorflows_own_error(server, stub, tmp_path):
    model_dir = write_matmul_model(tmp_path / "matmul", 1)  # the same model the server serves
    rank_one = _kernel_message(model_dir, [1.0, 2.0])
    too_wide = _kernel_message(model_dir, [[1.0, 2.0, 3.0]])
    assert too_wide == "Matrix size-incompatible: In[0]: [1,3], In[1]: [2,1]"
    status, answer = rest(server, "/v1/models/matmul:predict", {"instances": [1.0, 2.0]})
    assert status == 400
    assert answer["error"].startswith(rank_one + "\n\t [[{{node StatefulPartitionedCall/MatMul}}]]")
    status, answer = rest(server, "/v1/models/matmul:predict", {"inputs": [[1.0, 2.0, 3.0]]})
    assert status == 400
    assert answer["error"].startswith(too_wide)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict("matmul", [1.0, 2.0]), 10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(rank_one)
    # The shape the graph takes answers.
    assert rest(server, "/v1/models/matmul:predict", {"instances": [[1.0, 2.0]]}) == (
        200,
        {"predictions": [[5.0]]},
    )


def test_a_wrong_dtype_still_gets_the_sessions_message(stub):
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict("half_plus_two", [1.0], dtype=tf.float64), 10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "Expects arg[0] to be float but double is provided"


# ---- 2. TF1-era SavedModels without TensorInfo shapes -------------------------------------------------


def test_tf1_model_without_tensorinfo_shapes_loads_and_is_available(server):
    assert server.manager.resolve("half_plus_three").servable.loader == "tf1-session"
    status, _h, body = http_request(server.rest_port, "GET", "/v1/models/half_plus_three")
    assert (status, body) == (
        200,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )


def test_tf1_model_over_rest_predict_classify_regress(server):
    path = "/v1/models/half_plus_three"
    assert rest(server, f"{path}:predict", {"instances": [1.0, 2.0, 5.0]}) == (
        200,
        {"predictions": [3.5, 4.0, 5.5]},
    )
    assert rest(server, f"{path}:predict", {"inputs": [[2.0]]}) == (200, {"outputs": [[4.0]]})
    classify = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert rest(server, f"{path}:classify", classify) == (200, {"results": [[["", 4.0]]]})
    regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 80.0}]}
    assert rest(server, f"{path}:regress", regress) == (200, {"results": [4.0, 43.0]})


def test_tf1_model_over_grpc_predict_classify_regress_multi_inference(stub):
    response = stub.Predict(_predict("half_plus_three", [[2.0]]), 10)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[4.0]]

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_three"
    classify.model_spec.signature_name = "classify_x_to_y"
    _examples(classify, 2.0)
    result = stub.Classify(classify, 10)
    assert [c.score for c in result.result.classifications[0].classes] == [4.0]
    assert result.model_spec.version.value == 123

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_three"
    regress.model_spec.signature_name = "regress_x_to_y"
    _examples(regress, 2.0, 4.0)
    assert [r.value for r in stub.Regress(regress, 10).result.regressions] == [4.0, 5.0]

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name = "half_plus_three"
        task.model_spec.signature_name = signature
    _examples(multi, 2.0)
    results = stub.MultiInference(multi, 10).results
    assert results[0].regression_result.regressions[0].value == 4.0
    assert results[1].classification_result.classifications[0].classes[0].score == 4.0


def test_tf1_model_metadata_shows_its_shapeless_tensorinfos(server, stub):
    status, _h, body = http_request(server.rest_port, "GET", "/v1/models/half_plus_three/metadata")
    assert status == 200
    x = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
    # No tensor_shape at all (a message field that was never set is not printed, as in TF Serving).
    assert x == {"dtype": "DT_FLOAT", "name": "x:0"}
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_three"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(request, 10).metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["classify_x_to_y"].inputs["inputs"].name == "tf_example:0"
