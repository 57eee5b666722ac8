"""One loaded SavedModel version: its signatures, their declared inputs, and a way to call them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from serving.errors import failed_precondition, invalid_argument

DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorSpec:
    alias: str
    dtype: np.dtype
    dtype_name: str  # e.g. "float" / "int64" / "string", as TF Serving's messages spell it
    shape: tuple[int | None, ...] | None  # None = unknown rank

    @cached_property
    def fixed_dims(self) -> tuple[tuple[int, int], ...]:
        """(axis, size) of each dimension the signature pins; checked on every request, so computed once."""
        return tuple((axis, size) for axis, size in enumerate(self.shape or ()) if size is not None)


class Signature:
    """A callable signature plus what it declares, taken from the SignatureDef in saved_model.pb."""

    def __init__(self, name: str, function, signature_def) -> None:
        import tensorflow as tf

        self.name = name
        self.function = function
        self.signature_def = signature_def
        self.method_name = signature_def.method_name
        self.inputs = {alias: _spec(alias, info, tf) for alias, info in signature_def.inputs.items()}
        self.outputs = {alias: _spec(alias, info, tf) for alias, info in signature_def.outputs.items()}
        self.input_names = sorted(self.inputs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            results = self.function(**{alias: tf.constant(value) for alias, value in inputs.items()})
        except (TypeError, ValueError) as error:
            raise invalid_argument(str(error)) from error
        return {alias: tensor.numpy() for alias, tensor in results.items()}


def _spec(alias: str, info, tf) -> TensorSpec:
    dtype = tf.dtypes.as_dtype(info.dtype)
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    return TensorSpec(alias, numpy_dtype, _TF_TYPE_NAMES.get(dtype.name, dtype.name), shape)


# TensorFlow's DataTypeString spellings, which TF Serving's error messages use.
_TF_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


class Servable:
    """A model version loaded with ``tf.saved_model.load``; safe to call from many threads."""

    def __init__(self, name: str, version: int, path: str, tags: tuple[str, ...] = ("serve",)) -> None:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name = name
        self.version = version
        self.path = path
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
            saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
        meta_graphs = [m for m in saved_model.meta_graphs if set(m.meta_info_def.tags) == set(tags)]
        if not meta_graphs:
            raise failed_precondition(
                f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}"
            )
        self.signature_defs = meta_graphs[0].signature_def
        self._loaded = tf.saved_model.load(path, tags=list(tags))
        self.signatures = {
            name: Signature(name, function, self.signature_defs[name])
            for name, function in self._loaded.signatures.items()
            if name in self.signature_defs
        }

    def signature(self, name: str) -> Signature:
        signature = self.signatures.get(name or DEFAULT_SIGNATURE)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found.')
        return signature
