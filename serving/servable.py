"""One loaded SavedModel version: its signatures, their declared inputs, and a way to call them.

A version loads with ``tf.saved_model.load`` (TF2). When that loader cannot take it, as with TF1-era
exports whose TensorInfos carry no shapes (the TF2 loader pins each feed to its TensorInfo's shape and
fails on ``ParseExample`` graphs), it loads into a ``tf.compat.v1`` session, which is what TF Serving
runs every model in. Either way a signature is called with whatever shapes the request has: TF Serving
does not compare request shapes with the TensorInfo, it runs the graph and reports TensorFlow's error.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable

import numpy as np

from serving.errors import ServingError, failed_precondition, invalid_argument, status_code_of

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
TF2_LOADER, SESSION_LOADER = "tf2", "tf1-session"

Call = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

# Decorations eager execution adds around a kernel's message; a session reports the bare message.
_EAGER_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](?: name: \S*)?\s*$")


class _Running:
    """How many signature calls are inside TensorFlow now, in this process (what a stop cannot cut)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __enter__(self) -> None:
        with self._lock:
            self.count += 1

    def __exit__(self, *_exc) -> None:
        with self._lock:
            self.count -= 1


RUNNING = _Running()


class TensorSpec:
    """What a SignatureDef declares for one tensor: alias, dtype (numpy and TF's spelling), shape."""

    __slots__ = ("alias", "dtype", "dtype_name", "shape")

    def __init__(self, alias: str, dtype: np.dtype, dtype_name: str, shape) -> None:
        self.alias = alias
        self.dtype = dtype
        self.dtype_name = dtype_name  # e.g. "float" / "int64" / "string", as TF Serving's messages spell it
        self.shape = shape  # tuple with None for unknown dims, or None for unknown rank; metadata only


def tensorflow_error(error: Exception) -> ServingError:
    """TensorFlow's own error with its canonical code, its message as a session would word it.

    Eager execution wraps a kernel's message in "Graph execution error", "Detected at node ... (most
    recent call last)" and "[Op:...]" lines; what is left is what TF Serving's session reports.
    """
    message = getattr(error, "message", None) or str(error)
    lines = message.split("\n")
    if lines and lines[0].startswith("Graph execution error"):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    if lines and lines[0].startswith("Detected at node"):
        lines = lines[1:]
        while lines and (lines[0].startswith("  ") or lines[0] == "<stack traces unavailable>"):
            lines = lines[1:]
    message = "\n".join(lines)
    message = _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message))
    return ServingError(status_code_of(error), message)


class Signature:
    """A callable signature plus what it declares, taken from the SignatureDef in saved_model.pb."""

    def __init__(self, name: str, function, signature_def, session_call: Call | None = None) -> None:
        import tensorflow as tf

        self.name = name
        self.function = function  # the TF2 loaded signature function (None in a TF1 session)
        self._session_call = session_call
        self.signature_def = signature_def
        self.method_name = signature_def.method_name
        self.inputs = {alias: _spec(alias, info, tf) for alias, info in signature_def.inputs.items()}
        self.outputs = {alias: _spec(alias, info, tf) for alias, info in signature_def.outputs.items()}
        self.input_names = sorted(self.inputs)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            with RUNNING:
                if self._session_call is not None:
                    return self._session_call(inputs)
                results = self.function(**{alias: tf.constant(value) for alias, value in inputs.items()})
                return {alias: tensor.numpy() for alias, tensor in results.items()}
        except tf.errors.OpError as error:
            raise tensorflow_error(error) from error
        except (TypeError, ValueError) as error:
            raise invalid_argument(str(error)) from error


def _spec(alias: str, info, tf) -> TensorSpec:
    dtype = tf.dtypes.as_dtype(info.dtype)
    if info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
    numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    return TensorSpec(alias, numpy_dtype, _TF_TYPE_NAMES.get(dtype.name, dtype.name), shape)


# TensorFlow's DataTypeString spellings, which TF Serving's error messages use.
_TF_TYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half", "object": "string"}


def type_name(dtype: np.dtype) -> str:
    """A numpy dtype as TensorFlow's DataTypeString spells it ("float", "double", "int64", ...)."""
    return _TF_TYPE_NAMES.get(dtype.name, dtype.name)


def _session_call(session, signature_def) -> Call:
    """Run the signature by its TensorInfo names, as TF Serving's ``Session::Run`` does.

    ``Session.run`` (and ``make_callable`` with feeds) compares each feed's shape with the graph's in
    Python first; a callable made from ``CallableOptions`` goes straight to the C++ session, which does
    not, so a shape the graph can still compute is computed and one it cannot gets TensorFlow's error.
    """
    from tensorflow.core.protobuf import config_pb2

    input_names = sorted(signature_def.inputs)
    output_names = sorted(signature_def.outputs)
    options = config_pb2.CallableOptions(
        feed=[signature_def.inputs[alias].name for alias in input_names],
        fetch=[signature_def.outputs[alias].name for alias in output_names],
    )
    run = session._make_callable_from_options(options)

    def call(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(output_names, run(*[inputs[alias] for alias in input_names]), strict=True))

    return call


def is_serving_signature(key: str, signature_def) -> bool:
    """A SignatureDef a client can call (not e.g. ``__saved_model_init_op``, which TF2 adds)."""
    return not key.startswith("__") and bool(signature_def.outputs)


def read_signature_defs(path: str, tags: tuple[str, ...] = ("serve",)) -> dict:
    """The SignatureDefs of the SavedModel at ``path`` (its meta graph with exactly ``tags``), read from
    ``saved_model.pb`` without loading the model: what the servable declares, as TF Serving reads it."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved_model = saved_model_pb2.SavedModel.FromString(handle.read())
    meta_graphs = [m for m in saved_model.meta_graphs if set(m.meta_info_def.tags) == set(tags)]
    if not meta_graphs:
        raise failed_precondition(
            f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}"
        )
    # Only the SignatureDefs outlive the read (what --remove_unused_fields_from_bundle_metagraph asks of
    # TF Serving): a copy each, so the parsed graph can be freed.
    found = {}
    for key, signature_def in meta_graphs[0].signature_def.items():
        found[key] = type(signature_def)()
        found[key].CopyFrom(signature_def)
    return found


class Servable:
    """A model version, loaded with the TF2 loader or else into a TF1 session; safe to call from threads."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        tags: tuple[str, ...] = ("serve",),
        session_config=None,
        method_name_check: bool = False,
    ) -> None:
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self.method_name_check = method_name_check  # --enable_signature_method_name_check
        self.signature_defs = read_signature_defs(path, tags)
        self.session = None
        try:
            loaded = tf.saved_model.load(path, tags=list(tags))
        except Exception as error:  # TF1-era exports the TF2 loader rejects: load them as TF Serving does
            log.info("TF2 loader cannot load %s (%s); loading it into a TF1 session", path, error)
            self._load_into_session(tags, session_config)
        else:
            self.loader = TF2_LOADER
            self._loaded = loaded
            self.signatures = {
                key: Signature(key, function, self.signature_defs[key])
                for key, function in loaded.signatures.items()
                if key in self.signature_defs
            }

    def _load_into_session(self, tags: tuple[str, ...], session_config) -> None:
        import tensorflow as tf

        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=session_config)
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(session, list(tags), self.path)
        self.loader = SESSION_LOADER
        self.session = session
        self.signatures = {}
        for key, signature_def in self.signature_defs.items():
            if not is_serving_signature(key, signature_def):
                continue
            self.signatures[key] = Signature(key, None, signature_def, _session_call(session, signature_def))

    def signature(self, name: str) -> Signature:
        signature = self.signatures.get(name or DEFAULT_SIGNATURE)
        if signature is None:
            raise failed_precondition(f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found.')
        return signature
