"""TF Serving's JSON encoding (``util/json_tensor.cc``): request bodies to numpy, numpy to response JSON.

Row format (``instances``) and columnar format (``inputs``), ``{"b64": ...}`` strings, classify/regress
``examples`` + ``context`` to serialized tf.Examples, and the error messages TF Serving gives for each kind
of bad input. Nothing from a request is evaluated or unpickled: only ``json`` parses it.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from serving.errors import invalid_argument
from serving.servable import Signature, TensorSpec

_DECODER = json.JSONDecoder()
_FLOAT_KINDS = ("float", "half", "double", "bfloat16")


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    return "Null"


def _compact(value) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 200 else text[:200] + "..."


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object; like rapidjson, parsing stops after the first value."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid_argument(
            f"JSON Parse error: Invalid encoding in string. at offset: {error.start}"
        ) from None
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        value, _end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as error:
        raise invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(value, dict):
        raise invalid_argument(f"JSON Value: {_compact(value)} Is not object")
    return value


def signature_name_of(request: dict) -> str:
    name = request.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument("'signature_name' key must be a string value.")
    return name


# ---- values to tensors ----------------------------------------------------------------------------------


def _leaf(value, spec: TensorSpec):
    kind = spec.dtype_name
    if kind in _FLOAT_KINDS:
        if type(value) in (int, float):
            return value
    elif kind == "bool":
        if type(value) is bool:
            return value
    elif kind == "string":
        if type(value) is str:
            return value.encode("utf-8")
        if isinstance(value, dict):
            return _b64(value)
    elif type(value) is int:  # every integer dtype
        return value
    raise invalid_argument(
        f"JSON Value: {_compact(value)} Type: {_json_type(value)} is not of expected type: {kind}"
    )


def _b64(value: dict) -> bytes:
    if set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise invalid_argument(f"JSON Value: {_compact(value)} expecting an object with a single 'b64' key")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"Unable to base64 decode: {_compact(value['b64'])}") from None


def _shape_of(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value, depth: int, shape: list[int], spec: TensorSpec, out: list) -> None:
    if isinstance(value, list):
        if depth >= len(shape):
            raise invalid_argument(f"Expecting shape {shape} but got: a list at depth {depth}")
        if len(value) != shape[depth]:
            raise invalid_argument(f"Expecting tensor size: {shape[depth]} but got: {len(value)}")
        for item in value:
            _flatten(item, depth + 1, shape, spec, out)
    else:
        if depth != len(shape):
            raise invalid_argument(f"Expecting shape {shape} but got a scalar at depth {depth}")
        out.append(_leaf(value, spec))


_INTEGER_TYPES = (int,)
# The JSON scalar types ``_leaf`` takes as they are for each dtype name (b64 objects excluded); every
# integer dtype takes ``_INTEGER_TYPES``.
_PLAIN_TYPES = {
    **{kind: (int, float) for kind in _FLOAT_KINDS},
    "bool": (bool,),
    "string": (str,),
}


def to_tensor(value, spec: TensorSpec) -> np.ndarray:
    """A JSON value (scalar or nested lists, all rows the same shape) as an array of ``spec``'s dtype."""
    if type(value) is list and value:
        plain = _PLAIN_TYPES.get(spec.dtype_name, _INTEGER_TYPES)
        if all(type(item) in plain for item in value):
            # A flat list of plain scalars (one feature of each row: the usual request) needs no walk.
            flat = [item.encode("utf-8") for item in value] if spec.dtype_name == "string" else value
            return _array(flat, [len(value)], spec)
    shape = _shape_of(value)
    flat: list = []
    _flatten(value, 0, shape, spec, flat)
    return _array(flat, shape, spec)


def _array(flat: list, shape: list[int], spec: TensorSpec) -> np.ndarray:
    if spec.dtype == object:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array if len(shape) == 1 else array.reshape(shape)
    try:
        array = np.array(flat, dtype=spec.dtype)
    except OverflowError:
        raise invalid_argument(f"A value does not fit the input's type {spec.dtype_name}") from None
    return array if len(shape) == 1 else array.reshape(shape)


def predict_inputs(request: dict, signature: Signature) -> tuple[dict[str, np.ndarray], bool]:
    """The predict request's tensors, and whether it used the row (``instances``) format."""
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows and has_columns:
        raise invalid_argument(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if not has_rows and not has_columns:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    specs = signature.inputs
    if has_rows:
        return _row_inputs(request["instances"], specs), True
    return _columnar_inputs(request["inputs"], specs), False


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _row_inputs(instances, specs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid_argument("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' array")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(specs) != 1:
            raise invalid_argument(
                "instances is a plain list, but expecting list of objects as multiple input tensors "
                "required as per tensorinfo_map"
            )
        ((alias, spec),) = specs.items()
        return {alias: to_tensor(instances, spec)}
    expected = set(specs)
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        if item.keys() != expected:
            for key in item:
                if key not in specs:
                    raise invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                        f"Invalid argument: JSON object: does not have named input: {key}"
                    )
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: {_compact(item)} "
                f"keys must be equal to: {','.join(sorted(expected))}"
            )
    return {alias: to_tensor([item[alias] for item in instances], spec) for alias, spec in specs.items()}


def _columnar_inputs(inputs, specs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        tensors = {}
        for alias, spec in specs.items():
            if alias not in inputs:
                raise invalid_argument(f"Missing named input: {alias} in 'inputs' object.")
            tensors[alias] = to_tensor(inputs[alias], spec)
        return tensors
    if len(specs) != 1:
        raise invalid_argument(
            "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
            "tensorinfo_map"
        )
    ((alias, spec),) = specs.items()
    return {alias: to_tensor(inputs, spec)}


# ---- tensors to JSON ------------------------------------------------------------------------------------


def to_json_value(alias: str, value: np.ndarray):
    """Lists of Python values; float32 printed in its shortest round-trip form, bytes as text or b64."""
    if value.dtype.kind == "f":
        if value.dtype.itemsize < 8:
            # str() of a float32 is its shortest round-trip decimal; json then prints that decimal.
            return value.astype(str).astype(np.float64).tolist()
        return value.tolist()
    if value.dtype == object or value.dtype.kind == "S":
        as_b64 = alias.endswith("_bytes")

        def convert(item):
            if isinstance(item, list):
                return [convert(i) for i in item]
            data = item if isinstance(item, bytes) else str(item).encode()
            return (
                {"b64": base64.b64encode(data).decode("ascii")} if as_b64 else data.decode("utf-8", "replace")
            )

        return convert(value.tolist())
    return value.tolist()


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    if not row_format:
        if len(outputs) == 1:
            ((alias, value),) = outputs.items()
            return {"outputs": to_json_value(alias, value)}
        return {"outputs": {alias: to_json_value(alias, value) for alias, value in outputs.items()}}
    batch = None
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch is None:
            batch = value.shape[0]
        elif value.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} expecting: {batch}"
            )
    if len(outputs) == 1:
        ((alias, value),) = outputs.items()
        return {"predictions": to_json_value(alias, value)}
    columns = {alias: to_json_value(alias, value) for alias, value in outputs.items()}
    return {"predictions": [{alias: columns[alias][row] for alias in columns} for row in range(batch or 0)]}


def dumps(document) -> bytes:
    """JSON text; non-finite floats as the bare NaN/Infinity tokens, as TF Serving writes them."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


# ---- classify / regress examples ------------------------------------------------------------------------


def _feature_kind(value) -> str:
    if isinstance(value, bool) or type(value) is int:
        return "int64"
    if type(value) is float:
        return "float"
    if isinstance(value, str) or _is_b64(value):
        return "bytes"
    raise invalid_argument(f"Unexpected element type in feature value: {_compact(value)}")


def _example(features: dict, where: str):
    from tensorflow.core.example import example_pb2

    if not isinstance(features, dict):
        raise invalid_argument(f"{where} is not a JSON object: {_compact(features)}")
    example = example_pb2.Example()
    for name, value in features.items():
        values = value if isinstance(value, list) else [value]
        if not values:
            continue
        kind = _feature_kind(values[0])
        feature = example.features.feature[name]
        converted = []
        for item in values:
            if isinstance(item, list):
                raise invalid_argument(f"Feature value: {name} is a nested list, which is not supported")
            if _feature_kind(item) != kind:
                raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")
            if kind == "bytes":
                converted.append(_b64(item) if isinstance(item, dict) else item.encode("utf-8"))
            else:
                converted.append(int(item) if kind == "int64" else item)
        getattr(feature, f"{kind}_list").value.extend(converted)
    return example


def examples_of(request: dict, method: str) -> list[bytes]:
    """Serialized tf.Examples for classify/regress; ``context`` features go into every example."""
    if "examples" not in request:
        raise invalid_argument(f"When method is {method}, key 'examples' is expected and was not found")
    examples = request["examples"]
    if not isinstance(examples, list):
        raise invalid_argument("'examples' value is not an array")
    if not examples:
        raise invalid_argument("'examples' value is an empty array")
    context = b""
    if "context" in request:
        context = _example(request["context"], "'context'").SerializeToString()
    # Context first: parsing the concatenation lets the example's own features win, as in TF Serving.
    return [context + _example(item, f"Example {i}").SerializeToString() for i, item in enumerate(examples)]
