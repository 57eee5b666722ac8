"""The taxi Keras model and the TFX ``run_fn`` that trains it and exports it with ``models.export``.

The export's signatures are those of every model (``models.export``): ``serving_default`` (Classify
``scores`` [None, 2] for classes "0" and "1", or Regress ``outputs``), ``serving_raw`` over the taxi
model's raw inputs (only ``features.REQUIRED_RAW_INPUTS`` must carry real values; the others may carry
the missing-value markers NaN, -1, ""), ``transform_features`` and ``eval_examples``.
"""

from __future__ import annotations

import logging

import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.tfxio import dataset_options

from models import contract, export, features, warm_start

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
    if _classifies(spec):
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


def export_signatures(model: tf.keras.Model, tf_transform_output, custom_config: dict) -> dict:
    """The signatures ``models.export`` builds for any model, over this taxi model's raw inputs."""
    settings = contract.ModelSettings.from_custom_config(custom_config)
    raw_inputs = features.model_spec(custom_config).input_keys
    return export.signatures(model, tf_transform_output, settings, raw_inputs=raw_inputs)


def _classifies(spec: features.ModelSpec) -> bool:
    return spec.task == contract.BINARY


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
    begun = warm_start.start(model, fn_args)
    log.info("%s: %s", spec.name, begun.reason)
    warm_start.write_report(fn_args, begun)
    model.fit(
        train,
        steps_per_epoch=begun.steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=0,  # Keras prints to stdout; the metrics go to the run's log instead
        callbacks=[
            tf.keras.callbacks.LambdaCallback(on_epoch_end=_log_epoch),
            # the Trainer's model_run output: KFP and Vertex show a TensorBoard for it
            tf.keras.callbacks.TensorBoard(
                log_dir=fn_args.model_run_dir, update_freq=max(1, begun.steps // 20)
            ),
        ],
    )
    export.export_model(
        model,
        tf_transform_output,
        fn_args.custom_config,
        fn_args.serving_model_dir,
        raw_inputs=spec.input_keys,
    )
