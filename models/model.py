"""The Keras model and the TFX ``run_fn`` that trains and exports it.

The export carries four signatures (names are a contract with the server and the canary tooling):

- ``serving_default``: ``examples`` = serialized ``tf.Example`` [None]. The classifier returns
  ``scores`` (float32 [None, 2]: P(class "0"), P(class "1")) and ``classes`` (string [None, 2]), which
  TF Serving's Classify API understands; the regressor returns ``outputs`` (float32 [None]) for Regress.
- ``serving_raw``: the model's raw features as named tensors [None] (float32, int64, string), same
  outputs, for plain-JSON REST clients. Only ``features.REQUIRED_RAW_INPUTS`` must carry real values;
  other inputs may carry the MISSING sentinel (NaN, -1, "") and are then treated like a missing value.
- ``transform_features``: the tf.Transform graph over serialized examples (TFMA computes the label).
- ``eval_examples``: serialized examples to one prediction column (``prediction``), what TFMA scores.
"""

from __future__ import annotations

import logging

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.tfxio import dataset_options

from models import catalog, features

log = logging.getLogger(__name__)

BATCH_SIZE = 64
SEED = 42
HIDDEN_UNITS = (64, 32, 16)


def _one_hot_size(key: str) -> int:
    if key in features.VOCAB_KEYS:
        return features.VOCAB_SIZE + features.OOV_SIZE
    if key in features.BUCKET_KEYS:
        return features.BUCKET_COUNT + 1
    if key in features.CATEGORICAL_KEYS:
        return features.CATEGORICAL_KEYS[key]
    if key in features.HASHED_INT_KEYS:
        return features.HASH_BUCKETS
    raise ValueError(f"no encoding defined for input feature {key!r}")


def build_keras_model(spec: features.ModelSpec) -> tf.keras.Model:
    """A small wide-and-deep network over the transformed features of ``spec``."""
    inputs, deep, wide = {}, [], []
    for key in spec.input_keys:
        name = features.transformed_name(key)
        if key in features.DENSE_FLOAT_KEYS:
            inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
            deep.append(tf.keras.layers.Reshape((1,))(inputs[name]))
        else:
            inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
            as_column = tf.keras.layers.Reshape((1,))(inputs[name])
            wide.append(tf.keras.layers.CategoryEncoding(num_tokens=_one_hot_size(key))(as_column))
    hidden = tf.keras.layers.concatenate(deep + wide)
    for units in HIDDEN_UNITS:
        hidden = tf.keras.layers.Dense(units, activation="relu")(hidden)
    if spec.task == catalog.CLASSIFICATION:
        output = tf.keras.layers.Dense(1, activation="sigmoid")(hidden)
        loss, metrics = "binary_crossentropy", [tf.keras.metrics.BinaryAccuracy()]
    else:
        output = tf.keras.layers.Dense(1)(hidden)
        loss, metrics = tf.keras.losses.Huber(delta=5.0), [tf.keras.metrics.MeanAbsoluteError()]
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.005), loss=loss, metrics=metrics)
    return model


def _dataset(fn_args: FnArgs, files: list[str], tf_transform_output, label_key: str) -> tf.data.Dataset:
    return fn_args.data_accessor.tf_dataset_factory(
        files,
        dataset_options.TensorFlowDatasetOptions(batch_size=BATCH_SIZE, label_key=label_key),
        tf_transform_output.transformed_metadata.schema,
    ).repeat()


def _sparse_from_dense(value: tf.Tensor) -> tf.SparseTensor:
    """A [batch, 1] sparse tensor holding the present values; sentinels become missing entries."""
    if value.dtype == tf.string:
        present = tf.not_equal(value, features.MISSING_STRING)
    elif value.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(value))
    else:
        present = tf.not_equal(value, features.MISSING_INT)
    rows = tf.where(present)
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    batch = tf.shape(value, out_type=tf.int64)[0]
    return tf.SparseTensor(indices, tf.gather_nd(value, rows), tf.stack([batch, tf.constant(1, tf.int64)]))


def _outputs(spec: features.ModelSpec, prediction: tf.Tensor) -> dict[str, tf.Tensor]:
    """Classify- or Regress-compatible outputs from the model's [batch, 1] prediction."""
    if spec.task == catalog.CLASSIFICATION:
        scores = tf.concat([1.0 - prediction, prediction], axis=1)
        classes = tf.tile(tf.constant([["0", "1"]]), [tf.shape(prediction)[0], 1])
        return {"scores": scores, "classes": classes}
    return {"outputs": tf.reshape(prediction, [-1])}


def export_signatures(model: tf.keras.Model, tf_transform_output, spec: features.ModelSpec) -> dict:
    """The concrete functions saved with the model (see the module docstring)."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k in spec.input_keys}

    def predict_raw(raw: dict) -> tf.Tensor:
        transformed = model.tft_layer(raw)
        names = [features.transformed_name(k) for k in spec.input_keys]
        return model({name: transformed[name] for name in names})

    examples = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples])
    def serving_default(serialized):
        return _outputs(spec, predict_raw(tf.io.parse_example(serialized, serving_spec)))

    @tf.function(input_signature=[examples])
    def eval_examples(serialized):
        return {"prediction": predict_raw(tf.io.parse_example(serialized, serving_spec))}

    @tf.function(input_signature=[examples])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, raw_spec))

    @tf.function(
        input_signature=[{k: tf.TensorSpec([None], features.raw_dtype(k), name=k) for k in spec.input_keys}]
    )
    def serving_raw(named):
        return _outputs(spec, predict_raw({k: _sparse_from_dense(v) for k, v in named.items()}))

    return {
        "serving_default": serving_default,
        "serving_raw": serving_raw,
        "transform_features": transform_features,
        "eval_examples": eval_examples,
    }


def _log_epoch(epoch: int, metrics: dict | None) -> None:
    shown = ", ".join(f"{name}={value:.4f}" for name, value in sorted((metrics or {}).items()))
    log.info("epoch %d: %s", epoch + 1, shown)


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point: train on the transformed window, export with all signatures."""
    spec = features.model_spec(fn_args.custom_config)
    tf.keras.utils.set_random_seed(SEED)  # same data, same steps → same model (reproducible gates)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args, fn_args.train_files, tf_transform_output, spec.label_key)
    evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output, spec.label_key)
    model = build_keras_model(spec)
    log.info("training %s for %d steps", spec.name, fn_args.train_steps)
    model.fit(
        train,
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=0,  # Keras prints to stdout; the metrics go to the run's log instead
        callbacks=[tf.keras.callbacks.LambdaCallback(on_epoch_end=_log_epoch)],
    )
    tf.saved_model.save(
        model,
        fn_args.serving_model_dir,
        signatures=export_signatures(model, tf_transform_output, spec),
    )
