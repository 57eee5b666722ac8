"""The router's partial gRPC messages agree with TF Serving's own, field by field, on the wire."""

import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from rollout import grpc_messages
from rollout.router_metrics import grpc_numbers


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (grpc_messages.ModelSpec, model_pb2.ModelSpec),
        (grpc_messages.Request, predict_pb2.PredictRequest),
        (grpc_messages.Request, classification_pb2.ClassificationRequest),
        (grpc_messages.Request, regression_pb2.RegressionRequest),
        (grpc_messages.Request, get_model_metadata_pb2.GetModelMetadataRequest),
        (grpc_messages.Request, get_model_status_pb2.GetModelStatusRequest),
        (grpc_messages.MultiInferenceRequest, inference_pb2.MultiInferenceRequest),
        (grpc_messages.PredictResponse, predict_pb2.PredictResponse),
        (grpc_messages.ClassificationResponse, classification_pb2.ClassificationResponse),
        (grpc_messages.RegressionResponse, regression_pb2.RegressionResponse),
        (grpc_messages.MultiInferenceResponse, inference_pb2.MultiInferenceResponse),
    ],
)
def test_every_field_the_router_reads_has_tf_servings_number_and_wire_type(ours, theirs):
    for field in ours.DESCRIPTOR.fields:
        real = theirs.DESCRIPTOR.fields_by_name[field.name]
        assert field.number == real.number, f"{theirs.DESCRIPTOR.name}.{field.name}"
        wire = {real.TYPE_MESSAGE: "bytes", real.TYPE_BYTES: "bytes", real.TYPE_STRING: "bytes"}
        assert wire.get(field.type, field.type) == wire.get(real.type, real.type), field.name


def test_a_rewritten_request_keeps_every_other_field_byte_for_byte():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "serving_raw"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.5, 2.5], dtype=tf.float32))
    request.output_filter.append("y")
    routed = grpc_messages.Request.FromString(request.SerializeToString())
    assert routed.model_spec.name == "m" and not routed.model_spec.HasField("version_label")
    routed.model_spec.version_label = "canary"
    back = predict_pb2.PredictRequest.FromString(routed.SerializeToString())
    expected = predict_pb2.PredictRequest()
    expected.CopyFrom(request)
    expected.model_spec.version_label = "canary"
    assert back == expected


def test_a_pinned_version_is_seen_as_pinned():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.version.value = 0  # version 0 is still a pinned version
    assert grpc_messages.Request.FromString(request.SerializeToString()).model_spec.HasField("version")


def test_predicted_numbers_are_read_from_each_answer_kind():
    predict = predict_pb2.PredictResponse()
    predict.outputs["scores"].CopyFrom(tf.make_tensor_proto([[0.25, 0.75]], dtype=tf.float32))
    assert grpc_numbers("Predict", predict.SerializeToString()) == [0.25, 0.75]  # tensor_content
    predict.outputs["scores"].Clear()
    predict.outputs["scores"].dtype = 2  # DT_DOUBLE
    predict.outputs["scores"].double_val.extend([1.5])
    assert grpc_numbers("Predict", predict.SerializeToString()) == [1.5]
    classify = classification_pb2.ClassificationResponse()
    classify.result.classifications.add().classes.add(label="1", score=0.5)
    assert grpc_numbers("Classify", classify.SerializeToString()) == [0.5]
    regress = regression_pb2.RegressionResponse()
    regress.result.regressions.add(value=3.25)
    assert grpc_numbers("Regress", regress.SerializeToString()) == [3.25]
    multi = inference_pb2.MultiInferenceResponse()
    multi.results.add().regression_result.regressions.add(value=1.0)
    multi.results.add().classification_result.classifications.add().classes.add(score=0.125)
    assert grpc_numbers("MultiInference", multi.SerializeToString()) == [1.0, 0.125]
