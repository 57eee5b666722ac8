"""Predict, classify, regress and metadata over a loaded servable; shared by REST, gRPC and warmup.

Inputs and outputs are numpy arrays here; REST and gRPC only translate JSON or TensorProtos to and from
them, so both front ends answer identically. ``run`` is how a signature gets called: directly, or through
the batch scheduler.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.errors import ServingError, invalid_argument
from serving.servable import Servable, Signature, type_name

Runner = Callable[[Signature, dict[str, np.ndarray]], dict[str, np.ndarray]]

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
_KIND = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


def direct_run(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return signature(inputs)


def check_inputs(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The request's inputs must be exactly the signature's, with its dtypes (TF's messages).

    Shapes are not compared with the TensorInfo, as in TF Serving's ``predict_util.cc``: the model runs
    and a shape it cannot take fails there, with TensorFlow's own message.
    """
    if inputs.keys() != signature.inputs.keys():
        sent, expected = set(inputs), set(signature.inputs)
        if len(sent) != len(expected):
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
            )
        alias = sorted(expected - sent)[0]
        raise invalid_argument(
            f"Signature input alias: {alias}(feed name: {signature.signature_def.inputs[alias].name}) "
            "not found in request and no default value provided."
        )
    for index, alias in enumerate(signature.input_names):
        value, spec = inputs[alias], signature.inputs[alias]
        if value.dtype != spec.dtype:
            raise invalid_argument(
                f"Expects arg[{index}] to be {spec.dtype_name} but {type_name(value.dtype)} is provided"
            )
    return inputs


def predict_signature(
    servable: Servable,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    output_filter: list[str] | tuple[str, ...] = (),
) -> Signature:
    """The signature a predict request calls, once its inputs and output filter are checked against it."""
    signature = servable.signature(signature_name)
    allowed = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)
    if servable.method_name_check and signature.method_name not in allowed:
        raise ServingError(  # --enable_signature_method_name_check, predict_util.cc's wording
            grpc.StatusCode.INTERNAL,
            f"Expected prediction signature method_name to be one of {{{', '.join(allowed)}}}. "
            f"Was: {signature.method_name}",
        )
    check_inputs(signature, inputs)
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{{{','.join(sorted(signature.outputs))}}}."
            )
    return signature


def filter_outputs(
    outputs: dict[str, np.ndarray], output_filter: list[str] | tuple[str, ...]
) -> dict[str, np.ndarray]:
    return {alias: outputs[alias] for alias in output_filter} if output_filter else outputs


def predict(
    servable: Servable,
    signature_name: str,
    inputs: dict[str, np.ndarray],
    run: Runner,
    output_filter: list[str] | tuple[str, ...] = (),
) -> tuple[Signature, dict[str, np.ndarray]]:
    signature = predict_signature(servable, signature_name, inputs, output_filter)
    return signature, filter_outputs(run(signature, inputs), output_filter)


def example_inputs(
    servable: Servable, signature_name: str, examples: list[bytes], method: str = ""
) -> tuple[Signature, dict[str, np.ndarray]]:
    """The classify/regress signature and its one input: the serialized tf.Examples as a string batch."""
    if not examples:
        raise invalid_argument("Input is empty.")
    signature = servable.signature(signature_name)
    if method and servable.method_name_check and signature.method_name != method:
        raise invalid_argument(  # --enable_signature_method_name_check, classifier.cc / regressor.cc
            f"Expected {_KIND[method]} signature method_name to be {method}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    alias = signature.input_names[0]
    if signature.inputs[alias].dtype_name != "string":
        raise invalid_argument(f"Expected input tensor {alias} to be of type string for serialized examples.")
    batch = np.empty(len(examples), dtype=object)
    batch[:] = examples
    return signature, {alias: batch}


def classify(
    servable: Servable, signature_name: str, examples: list[bytes], run: Runner
) -> list[list[tuple[str, float]]]:
    """Per example, the (label, score) pairs; label is "" when the model has no ``classes`` output."""
    signature, inputs = example_inputs(servable, signature_name, examples, CLASSIFY_METHOD)
    return classification(run(signature, inputs), len(examples))


def classification(outputs: dict[str, np.ndarray], count: int) -> list[list[tuple[str, float]]]:
    """A classify signature's outputs for ``count`` examples as (label, score) pairs per example."""
    scores, classes = outputs.get("scores"), outputs.get("classes")
    if scores is None and classes is None:
        raise invalid_argument(
            "Expected classification signature outputs to contain at least one of classes or scores"
        )
    for name, tensor in (("scores", scores), ("classes", classes)):
        if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != count):
            raise invalid_argument(
                f"Expected {name} Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
            )
    width = (scores if scores is not None else classes).shape[1]
    results = []
    for row in range(count):
        pairs = []
        for column in range(width):
            label = classes[row, column] if classes is not None else b""
            label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            score = float(scores[row, column]) if scores is not None else 0.0
            pairs.append((label, score))
        results.append(pairs)
    return results


def regress(servable: Servable, signature_name: str, examples: list[bytes], run: Runner) -> list[float]:
    signature, inputs = example_inputs(servable, signature_name, examples, REGRESS_METHOD)
    return regression(run(signature, inputs), len(examples))


def regression(outputs: dict[str, np.ndarray], count: int) -> list[float]:
    """A regress signature's outputs for ``count`` examples as one float each."""
    if "outputs" in outputs:
        values = outputs["outputs"]
    elif len(outputs) == 1:
        values = next(iter(outputs.values()))
    else:
        raise invalid_argument("Expected one output Tensor.")
    if not (values.shape == (count,) or values.shape == (count, 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(values.shape)}"
        )
    return [float(v) for v in values.reshape(-1)]


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in servable.signature_defs.items():
        result.signature_def[name].CopyFrom(signature_def)
    return result
