"""Just enough of TF Serving's gRPC messages to route them, in a private descriptor pool.

The router reads and rewrites only a request's ``model_spec`` and reads only the predicted numbers of a
response. Declaring those fields alone (same numbers and wire types as ``tensorflow_serving/apis/*.proto``)
lets protobuf do all the encoding while every other field (inputs, examples, outputs) stays as unknown
bytes, passed on untouched: a request is routed without decoding its tensors, and the router does not
import TensorFlow (which ``tensorflow_serving.apis`` does). ``tests/rollout/test_grpc_messages.py``
checks these against the real messages.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "tfx_canary.routing"


def _build() -> dict[str, type]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfx_canary/routing.proto", package=PACKAGE, syntax="proto2"
    )
    F = descriptor_pb2.FieldDescriptorProto
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def message(name: str, *fields: tuple) -> None:
        added = proto.message_type.add(name=name)
        for field_name, number, kind, *rest in fields:
            label = rest[0] if rest else optional
            field = added.field.add(name=field_name, number=number, type=kind, label=label)
            if kind == F.TYPE_MESSAGE:
                field.type_name = f".{PACKAGE}.{rest[1]}"

    message(
        "ModelSpec",
        ("name", 1, F.TYPE_STRING),
        ("version", 2, F.TYPE_BYTES),  # an Int64Value: only its presence matters here
        ("signature_name", 3, F.TYPE_STRING),
        ("version_label", 4, F.TYPE_STRING),
    )
    # Predict, Classify, Regress, GetModelMetadata and GetModelStatus requests: model_spec is field 1.
    message("Request", ("model_spec", 1, F.TYPE_MESSAGE, optional, "ModelSpec"))
    message("InferenceTask", ("model_spec", 1, F.TYPE_MESSAGE, optional, "ModelSpec"))
    message("MultiInferenceRequest", ("tasks", 1, F.TYPE_MESSAGE, repeated, "InferenceTask"))
    message(
        "TensorProto",
        ("dtype", 1, F.TYPE_INT32),
        ("tensor_content", 4, F.TYPE_BYTES),
        ("float_val", 5, F.TYPE_FLOAT, repeated),
        ("double_val", 6, F.TYPE_DOUBLE, repeated),
    )
    message("OutputsEntry", ("key", 1, F.TYPE_STRING), ("value", 2, F.TYPE_MESSAGE, optional, "TensorProto"))
    message("PredictResponse", ("outputs", 1, F.TYPE_MESSAGE, repeated, "OutputsEntry"))
    message("Class", ("label", 1, F.TYPE_STRING), ("score", 2, F.TYPE_FLOAT))
    message("Classifications", ("classes", 1, F.TYPE_MESSAGE, repeated, "Class"))
    message("ClassificationResult", ("classifications", 1, F.TYPE_MESSAGE, repeated, "Classifications"))
    message("ClassificationResponse", ("result", 1, F.TYPE_MESSAGE, optional, "ClassificationResult"))
    message("Regression", ("value", 1, F.TYPE_FLOAT))
    message("RegressionResult", ("regressions", 1, F.TYPE_MESSAGE, repeated, "Regression"))
    message("RegressionResponse", ("result", 1, F.TYPE_MESSAGE, optional, "RegressionResult"))
    message(
        "InferenceResult",
        ("classification_result", 2, F.TYPE_MESSAGE, optional, "ClassificationResult"),
        ("regression_result", 3, F.TYPE_MESSAGE, optional, "RegressionResult"),
    )
    message("MultiInferenceResponse", ("results", 1, F.TYPE_MESSAGE, repeated, "InferenceResult"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        m.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{m.name}"))
        for m in proto.message_type
    }


_MESSAGES = _build()
ModelSpec = _MESSAGES["ModelSpec"]
Request = _MESSAGES["Request"]
MultiInferenceRequest = _MESSAGES["MultiInferenceRequest"]
PredictResponse = _MESSAGES["PredictResponse"]
ClassificationResponse = _MESSAGES["ClassificationResponse"]
RegressionResponse = _MESSAGES["RegressionResponse"]
MultiInferenceResponse = _MESSAGES["MultiInferenceResponse"]
