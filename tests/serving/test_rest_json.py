"""JSON values to arrays: the flat-row fast path gives what the general walk gives, errors included."""

from __future__ import annotations

import numpy as np
import pytest

from serving import rest_json
from serving.errors import ServingError
from serving.servable import TensorSpec

SPECS = {
    "float": TensorSpec("x", np.dtype(np.float32), "float", (None,)),
    "int64": TensorSpec("x", np.dtype(np.int64), "int64", (None,)),
    "bool": TensorSpec("x", np.dtype(bool), "bool", (None,)),
    "string": TensorSpec("x", np.dtype(object), "string", (None,)),
}


@pytest.mark.parametrize(
    ("kind", "values"),
    [
        ("float", [1.5, 2, -3.25]),
        ("int64", [1, -2, 2**40]),
        ("bool", [True, False]),
        ("string", ["a", "é", ""]),
    ],
)
def test_flat_rows_match_the_general_walk(kind, values):
    spec = SPECS[kind]
    flat = rest_json.to_tensor(values, spec)
    nested = rest_json.to_tensor([[v] for v in values], spec)  # the general path, one level deeper
    assert flat.dtype == spec.dtype and flat.shape == (len(values),)
    assert flat.tolist() == nested.reshape(-1).tolist()


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        ("float", [1.0, "a"], 'JSON Value: "a" Type: String is not of expected type: float'),
        ("float", [1.0, True], "JSON Value: true Type: Bool is not of expected type: float"),
        ("int64", [1, 2.5], "JSON Value: 2.5 Type: Number is not of expected type: int64"),
        ("bool", [True, 0], "JSON Value: 0 Type: Number is not of expected type: bool"),
        ("string", ["a", 1], "JSON Value: 1 Type: Number is not of expected type: string"),
        ("float", [1.0, [2.0]], "Expecting shape [2] but got: a list at depth 1"),
    ],
)
def test_bad_rows_get_the_general_walks_errors(kind, values, message):
    with pytest.raises(ServingError) as error:
        rest_json.to_tensor(values, SPECS[kind])
    assert error.value.message == message


def test_out_of_range_integers_are_a_clear_error():
    with pytest.raises(ServingError, match="does not fit the input's type int64"):
        rest_json.to_tensor([1, 2**70], SPECS["int64"])


def test_b64_strings_still_decode_in_a_flat_row():
    assert rest_json.to_tensor(["a", {"b64": "Yg=="}], SPECS["string"]).tolist() == [b"a", b"b"]
