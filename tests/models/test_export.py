"""models.export: any Keras model over tf.Transform features gets every signature, for each task.

A real tf.Transform output (Beam) over a few rows with a required and an optional column; the
models are untrained (the signatures' shapes and agreement are what is checked).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from models import contract
from models.export import export_model

SCHEMA = """
feature { name: "size" type: FLOAT shape { dim { size: 1 } } presence { min_fraction: 1.0 } }
feature { name: "weight" type: FLOAT }
feature { name: "kind" type: INT }
"""
ROWS = [(1.0, 3.0, 0), (2.0, None, 1), (3.0, 1.0, 2), (4.0, 2.0, 1)]


def _example(size: float, weight: float | None = None, kind: int | None = None) -> bytes:
    feature = {"size": tf.train.Feature(float_list=tf.train.FloatList(value=[size]))}
    if weight is not None:
        feature["weight"] = tf.train.Feature(float_list=tf.train.FloatList(value=[weight]))
    if kind is not None:
        feature["kind"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[kind]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _preprocessing_fn(inputs):
    weight = tf.sparse.to_dense(
        tf.SparseTensor(
            inputs["weight"].indices, inputs["weight"].values, [inputs["weight"].dense_shape[0], 1]
        ),
        0.0,
    )
    kind = tf.sparse.to_dense(inputs["kind"], 0)
    return {
        "size_xf": tft.scale_to_z_score(tf.reshape(inputs["size"], [-1])),
        "weight_xf": tf.reshape(weight, [-1]),
        "kind_xf": tf.reshape(kind, [-1]),
    }


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    folder = tmp_path_factory.mktemp("export_transform")
    schema = text_format.Parse(SCHEMA, schema_pb2.Schema())
    metadata = dataset_metadata.DatasetMetadata(schema)
    instances = [{"size": [s], "weight": [w] if w is not None else [], "kind": [k]} for s, w, k in ROWS]
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(folder / "tmp")):
        transform_fn = (pipeline | beam.Create(instances), metadata) | tft_beam.AnalyzeDataset(
            _preprocessing_fn
        )
        _ = transform_fn | tft_beam.WriteTransformFn(str(folder / "out"))
    metadata_io.write_metadata(metadata, str(folder / "out" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(folder / "out"))


def _model(units: int, activation: str | None) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(1)
    inputs = {name: tf.keras.Input(shape=(), name=name) for name in ("size_xf", "weight_xf")}
    stacked = tf.keras.layers.concatenate([tf.keras.layers.Reshape((1,))(t) for t in inputs.values()])
    return tf.keras.Model(inputs, tf.keras.layers.Dense(units, activation=activation)(stacked))


def _export(tmp_path, transform_output, model, task, classes=()):
    custom_config = contract.ModelSettings("kind", "kind_xf", task, classes).to_custom_config()
    export_model(model, transform_output, custom_config, str(tmp_path / task))
    return tf.saved_model.load(str(tmp_path / task))


def test_multiclass_answers_every_class_with_its_score(tmp_path, transform_output):
    loaded = _export(
        tmp_path, transform_output, _model(3, "softmax"), contract.MULTICLASS, ("red", "green", "blue")
    )
    assert set(loaded.signatures) == {"serving_default", "serving_raw", "transform_features", "eval_examples"}
    examples = tf.constant([_example(1.5, 2.0), _example(3.5)])
    classified = loaded.signatures["serving_default"](examples=examples)
    assert classified["scores"].shape == (2, 3)
    assert classified["classes"].numpy().tolist() == [[b"red", b"green", b"blue"]] * 2
    np.testing.assert_allclose(classified["scores"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    evaluated = loaded.signatures["eval_examples"](examples=examples)["prediction"].numpy()
    np.testing.assert_allclose(evaluated, classified["scores"].numpy(), rtol=1e-6)
    # The raw-features signature: the required column plain, the optional one with NaN for "missing".
    inputs = loaded.signatures["serving_raw"].structured_input_signature[1]
    assert set(inputs) == {"size", "weight"} and inputs["size"].dtype == tf.float32
    raw = loaded.signatures["serving_raw"](
        size=tf.constant([1.5, 3.5]), weight=tf.constant([2.0, contract.MISSING_FLOAT])
    )
    np.testing.assert_allclose(raw["scores"].numpy(), classified["scores"].numpy(), rtol=1e-5)
    transformed = loaded.signatures["transform_features"](examples=tf.constant([_example(1.0, 3.0, 2)]))
    assert transformed["kind_xf"].numpy().tolist() == [2]


def test_binary_scores_both_classes_and_regression_returns_one_value(tmp_path, transform_output):
    binary = _export(tmp_path, transform_output, _model(1, "sigmoid"), contract.BINARY, ("no", "yes"))
    examples = tf.constant([_example(2.0, 1.0)])
    answer = binary.signatures["serving_default"](examples=examples)
    positive = binary.signatures["eval_examples"](examples=examples)["prediction"].numpy()[0, 0]
    np.testing.assert_allclose(answer["scores"].numpy()[0], [1 - positive, positive], rtol=1e-5)
    assert answer["classes"].numpy().tolist() == [[b"no", b"yes"]]
    regressor = _export(tmp_path, transform_output, _model(1, None), contract.REGRESSION)
    outputs = regressor.signatures["serving_default"](examples=tf.constant([_example(2.0), _example(3.0)]))
    assert set(outputs) == {"outputs"} and outputs["outputs"].shape == (2,)


def test_settings_and_raw_inputs_are_checked(tmp_path, transform_output):
    with pytest.raises(ValueError, match="custom_config has no"):
        export_model(_model(1, None), transform_output, {"model": "x"}, str(tmp_path / "a"))
    custom_config = contract.ModelSettings("kind", "kind_xf", contract.REGRESSION).to_custom_config()
    with pytest.raises(ValueError, match=r"raw_inputs \['colour'\] are not in the raw schema"):
        export_model(
            _model(1, None), transform_output, custom_config, str(tmp_path / "b"), raw_inputs=["colour"]
        )


def test_the_lookup_tables_and_vocabulary_files_of_a_users_model_are_saved(tmp_path, transform_output):
    """The export keeps what the signatures capture (weights, tables, assets), not the Keras object:
    a model with its own lookup layers still answers once its export has been moved elsewhere."""
    vocabulary = tmp_path / "kinds.txt"
    vocabulary.write_text("1\n2\n")
    tf.keras.utils.set_random_seed(1)
    inputs = {name: tf.keras.Input(shape=(), name=name) for name in ("size_xf", "weight_xf")}
    as_text = tf.keras.layers.Lambda(lambda t: tf.strings.as_string(tf.cast(t, tf.int64)))(inputs["size_xf"])
    in_memory = tf.keras.layers.StringLookup(vocabulary=["1", "2", "3"], output_mode="one_hot")(as_text)
    from_file = tf.keras.layers.StringLookup(vocabulary=str(vocabulary), output_mode="one_hot")(as_text)
    stacked = tf.keras.layers.concatenate(
        [in_memory, from_file, tf.keras.layers.Reshape((1,))(inputs["weight_xf"])]
    )
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(stacked))
    custom_config = contract.ModelSettings("kind", "kind_xf", contract.REGRESSION).to_custom_config()
    export_model(model, transform_output, custom_config, str(tmp_path / "export"))
    vocabulary.unlink()  # the export has its own copy
    (tmp_path / "export").rename(tmp_path / "moved")
    loaded = tf.saved_model.load(str(tmp_path / "moved"))
    _answers_like(loaded, model, transform_output)
    assert not (tmp_path / "moved" / "keras_metadata.pb").exists()  # no Keras layer functions stored


def test_a_keras_3_model_exports_too(tmp_path, transform_output):
    """``tf.keras`` is Keras 2 in a pipeline run (tf.Transform asks for it), but a user's run_fn may
    build its model with Keras 3 (``import keras``): its variables are saved as well."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = {name: keras.Input(shape=(), name=name) for name in ("size_xf", "weight_xf")}
    stacked = keras.layers.Concatenate()([keras.layers.Reshape((1,))(t) for t in inputs.values()])
    model = keras.Model(inputs, keras.layers.Dense(1)(stacked))
    assert not isinstance(model, tf.keras.Model)  # really the other Keras
    _answers_like(_export(tmp_path, transform_output, model, contract.REGRESSION), model, transform_output)


class _ShiftIfPositive(tf.keras.layers.Layer):
    """A user's layer with Python control flow on a tensor: only AutoGraph can trace it."""

    def call(self, x):
        if tf.reduce_max(x) > 0.0:
            return x - tf.reduce_max(x)
        return x


def test_a_users_layer_that_needs_autograph_exports_and_answers_like_the_model(tmp_path, transform_output):
    """The export runs tf.Transform's layer without AutoGraph (faster); the model's own code keeps it."""
    tf.keras.utils.set_random_seed(1)
    inputs = {name: tf.keras.Input(shape=(), name=name) for name in ("size_xf", "weight_xf")}
    stacked = tf.keras.layers.concatenate([tf.keras.layers.Reshape((1,))(t) for t in inputs.values()])
    model = tf.keras.Model(inputs, _ShiftIfPositive()(tf.keras.layers.Dense(1)(stacked)))
    _answers_like(_export(tmp_path, transform_output, model, contract.REGRESSION), model, transform_output)


def _answers_like(loaded, model, transform_output) -> None:
    """The exported regressor's ``serving_default`` answers as ``model`` does on the transformed rows."""
    examples = tf.constant([_example(1.5, 2.0), _example(3.5)])
    exported = loaded.signatures["serving_default"](examples=examples)["outputs"].numpy()
    transformed = transform_output.transform_features_layer()(
        tf.io.parse_example(examples, transform_output.raw_feature_spec())
    )
    direct = np.asarray(model({name: transformed[name] for name in ("size_xf", "weight_xf")})).reshape(-1)
    np.testing.assert_allclose(exported, direct, rtol=1e-5)
