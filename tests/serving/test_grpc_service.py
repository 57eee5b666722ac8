"""gRPC request tensors: the fast TensorProto reader gives exactly what ``tf.make_ndarray`` gives."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.errors import ServingError
from serving.grpc_service import tensors_of, to_ndarray


def _proto(dtype: int, shape: list[int], **fields) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape])
    )
    return proto


PROTOS = {
    "float row": tf.make_tensor_proto([1.5], dtype=tf.float32),
    "float matrix (tensor_content)": tf.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3)),
    "double": tf.make_tensor_proto([[1.25], [-2.5]], dtype=tf.float64),
    "int32": tf.make_tensor_proto([7, -8, 9], dtype=tf.int32),
    "int64 (tensor_content)": tf.make_tensor_proto(np.array([2**40, -3], dtype=np.int64)),
    "int64 field": _proto(types_pb2.DT_INT64, [2], int64_val=[2**40, -3]),
    "bool": tf.make_tensor_proto([True, False], dtype=tf.bool),
    "string": tf.make_tensor_proto([b"Cash", b"", "\u00e9".encode()], dtype=tf.string),
    "string matrix": tf.make_tensor_proto([[b"a", b"b"], [b"c", b"d"]], dtype=tf.string),
    "scalar": tf.make_tensor_proto(3.0, dtype=tf.float32),
    "empty": tf.make_tensor_proto(np.zeros((0, 2), dtype=np.float32)),
    "repeat-last shorthand": _proto(types_pb2.DT_FLOAT, [4], float_val=[1.0, 2.0]),
    "no values at all": _proto(types_pb2.DT_INT64, [3]),
    "half (not a fast dtype)": tf.make_tensor_proto([0.5, 1.5], dtype=tf.float16),
    "uint8": tf.make_tensor_proto([1, 255], dtype=tf.uint8),
}


@pytest.mark.parametrize("name", PROTOS)
def test_to_ndarray_matches_tf_make_ndarray(name):
    proto = PROTOS[name]
    expected, got = tf.make_ndarray(proto), to_ndarray(proto)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.tolist() == expected.tolist()
    if got.size:
        got.reshape(-1)[0] = got.reshape(-1)[-1]  # a writable copy, never a view on the request's bytes


def test_tensor_content_of_the_wrong_length_is_a_clear_400():
    request = predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(_proto(types_pb2.DT_FLOAT, [3], tensor_content=b"\x00" * 8))
    with pytest.raises(ServingError) as raised:
        tensors_of(request)
    assert raised.value.http_status == 400
    assert raised.value.message.startswith("Invalid input tensor:")
