"""Export any Keras model trained on tf.Transform features with the signatures the release needs.

A ``run_fn`` trains a Keras model whose inputs are transformed features (named like the
``preprocessing_fn`` outputs) and calls ``export_model``. The model's output is, by task
(``models.contract``): binary classification, P(class index 1) as [batch, 1]; multi-class, one
probability per class as [batch, K] (softmax); regression, the value as [batch, 1].

The export carries four signatures (the names are a contract with the server, TFMA and the canary
tooling):

- ``serving_default``: ``examples`` = serialized ``tf.Example`` [None]. A classifier returns
  ``scores`` (float32 [None, K]) and ``classes`` (string [None, K], the config's class names), which
  TF Serving's Classify answers with every class and its score; a regressor returns ``outputs``
  (float32 [None]) for Regress. Predict returns the same tensors.
- ``serving_raw``: the raw features as named tensors [None] (float32, int64 or string by the raw
  schema), same outputs, for plain JSON clients. A column the schema requires (a fixed shape) must
  carry a value; any other column may carry the missing-value marker (``contract.MISSING_FLOAT`` NaN,
  ``MISSING_INT`` -1, ``MISSING_STRING`` "") and is then treated as missing, like an empty CSV cell.
- ``transform_features``: the tf.Transform graph over serialized examples (TFMA computes the label).
- ``eval_examples``: serialized examples to the model's output as ``prediction``, what TFMA scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from models import contract, warm_start


def export_model(
    model: tf.keras.Model,
    tf_transform_output,
    custom_config: Mapping | None,
    export_dir: str,
    raw_inputs: Sequence[str] | None = None,
) -> None:
    """Save ``model`` to ``export_dir`` (the Trainer's ``serving_model_dir``) with every signature, and
    its Keras weights and transform graph beside it for the next run's warm start
    (``models.warm_start``).

    ``custom_config`` is the one the Trainer received (``fn_args.custom_config``): it carries the task,
    label and classes. ``raw_inputs`` are the raw columns the serving signatures take; by default every
    column of the raw schema except the label.
    """
    settings = contract.ModelSettings.from_custom_config(custom_config)
    warm_start.save_weights(model, export_dir)  # before the signatures attach the transform layer
    warm_start.save_transform(tf_transform_output, export_dir)
    save(model, export_dir, signatures(model, tf_transform_output, settings, raw_inputs))


def save(model: tf.keras.Model, export_dir: str, functions: dict) -> None:
    """Write a SavedModel holding ``functions`` (from ``signatures``) and what they capture, not the
    Keras object.

    Saving the Keras model itself also traces and stores every layer's own call functions (the
    transform layer's too) so that Keras could rebuild the layers, which TF Serving, TFMA and the load
    check never do: for the taxi model that took the save from about 5 s to 9.6 s and the load from
    0.7 s to 3.0 s, for the same signatures and answers. Warm start reads the separate weights file.
    """
    root = tf.Module()
    # The weights (Keras 2 or Keras 3 variables), then every variable, lookup table and vocabulary
    # file reachable from the model through checkpoint dependencies: a user's lookup layers and the
    # transform layer's own.
    captured = {id(v): v for v in model.variables}
    for part in tf.train.TrackableView(model).descendants():
        if isinstance(part, _CAPTURED_KINDS):
            captured.setdefault(id(part), part)
    root.captured = list(captured.values())
    tf.saved_model.save(root, export_dir, signatures=functions)


_CAPTURED_KINDS = (tf.Variable, tf.saved_model.experimental.TrackableResource, tf.saved_model.Asset)


def signatures(
    model: tf.keras.Model,
    tf_transform_output,
    settings: contract.ModelSettings,
    raw_inputs: Sequence[str] | None = None,
) -> dict:
    """The concrete functions ``export_model`` saves (see the module docstring)."""
    model.tft_layer = tf_transform_output.transform_features_layer()  # ``save`` keeps it beside the weights
    raw_spec = tf_transform_output.raw_feature_spec()
    keys = list(raw_inputs) if raw_inputs is not None else [k for k in raw_spec if k != settings.label]
    unknown = sorted(set(keys) - set(raw_spec))
    if unknown:
        raise ValueError(f"raw_inputs {unknown} are not in the raw schema {sorted(raw_spec)}")
    serving_spec = {k: raw_spec[k] for k in keys}
    model_inputs = [t.name for t in model.inputs]

    # tf.Transform's layer runs without AutoGraph: its code has no tensor-dependent Python control
    # flow, and converting it took about 1.2 s of the 3.8 s first export in a process (every Trainer
    # run on Vertex). The model's own call keeps AutoGraph: a user's layer may need it.
    @tf.autograph.experimental.do_not_convert
    def transform(raw: dict) -> dict:
        return model.tft_layer(raw)

    def predict_raw(raw: dict) -> tf.Tensor:
        transformed = transform(raw)
        return model({name: transformed[name] for name in model_inputs})

    examples = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def predict_examples(serialized):  # traced once for the two signatures below
        return predict_raw(tf.io.parse_example(serialized, serving_spec))

    @tf.function(input_signature=[examples])
    def serving_default(serialized):
        return _outputs(settings, predict_examples(serialized))

    @tf.function(input_signature=[examples])
    def eval_examples(serialized):
        return {contract.PREDICTION_KEY: predict_examples(serialized)}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return transform(tf.io.parse_example(serialized, raw_spec))

    named = {k: tf.TensorSpec([None], raw_spec[k].dtype, name=k) for k in keys}

    @tf.function(input_signature=[named])
    def serving_raw(tensors):
        return _outputs(
            settings, predict_raw({k: _as_parsed(v, serving_spec[k]) for k, v in tensors.items()})
        )

    return {
        contract.SERVING_DEFAULT: serving_default,
        contract.SERVING_RAW: serving_raw,
        contract.TRANSFORM_FEATURES: transform_features,
        contract.EVAL_EXAMPLES: eval_examples,
    }


def _outputs(settings: contract.ModelSettings, prediction: tf.Tensor) -> dict[str, tf.Tensor]:
    """Classify- or Regress-compatible outputs from the model's prediction."""
    if settings.task == contract.REGRESSION:
        return {"outputs": tf.reshape(prediction, [-1])}
    if settings.task == contract.BINARY:
        positive = tf.reshape(prediction, [-1, 1])
        scores = tf.concat([1.0 - positive, positive], axis=1)
    else:
        scores = prediction
    classes = tf.tile(tf.constant([list(settings.classes)]), [tf.shape(scores)[0], 1])
    return {"scores": scores, "classes": classes}


def _as_parsed(value: tf.Tensor, spec) -> tf.Tensor | tf.SparseTensor:
    """One named [batch] tensor as ``tf.io.parse_example`` would give it for ``spec``.

    A required column (fixed shape) stays dense; an optional one becomes a [batch, 1] sparse tensor
    without the entries that carry the missing-value marker.
    """
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(value, [-1, *spec.shape])
    if value.dtype == tf.string:
        present = tf.not_equal(value, contract.MISSING_STRING)
    elif value.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(value))
    else:
        present = tf.not_equal(value, contract.MISSING_INT)
    rows = tf.where(present)
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    batch = tf.shape(value, out_type=tf.int64)[0]
    return tf.SparseTensor(indices, tf.gather_nd(value, rows), tf.stack([batch, tf.constant(1, tf.int64)]))
