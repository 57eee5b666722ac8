"""The Keras model builds, trains a step, exports, and both serving signatures agree."""

import math

import numpy as np
import pytest
import tensorflow as tf

from fixtures.taxi import export_model
from models import features

from .conftest import raw_rows, taxi_spec, to_example


def _export(transform, model_name, path):
    export_model(transform, model_name, path)
    return tf.saved_model.load(path), taxi_spec(model_name)


def _named_tensors(rows, spec):
    """serving_raw inputs: every model input, the MISSING sentinel where a row lacks a value."""
    named = {}
    for key in spec.input_keys:
        dtype = features.raw_dtype(key)
        missing = {tf.float32: features.MISSING_FLOAT, tf.int64: features.MISSING_INT}.get(
            dtype, features.MISSING_STRING
        )
        named[key] = tf.constant([row.get(key, missing) for row in rows], dtype)
    return named


def test_classifier_signatures_accept_examples_and_named_tensors(tips_transform, tmp_path):
    loaded, spec = _export(tips_transform, "taxi_tips", str(tmp_path / "tips"))
    assert set(loaded.signatures) == {"serving_default", "serving_raw", "transform_features", "eval_examples"}
    rows = raw_rows(8)
    by_example = loaded.signatures["serving_default"](examples=tf.constant([to_example(r) for r in rows]))
    assert by_example["scores"].shape == (8, 2) and by_example["scores"].dtype == tf.float32
    assert by_example["classes"].numpy()[0].tolist() == [b"0", b"1"]
    np.testing.assert_allclose(by_example["scores"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert any("company" not in r for r in rows)  # rows with missing values are part of the check
    by_name = loaded.signatures["serving_raw"](**_named_tensors(rows, spec))
    np.testing.assert_allclose(by_name["scores"].numpy(), by_example["scores"].numpy(), rtol=1e-5)
    evaluated = loaded.signatures["eval_examples"](examples=tf.constant([to_example(r) for r in rows]))
    np.testing.assert_allclose(
        evaluated["prediction"].numpy()[:, 0], by_example["scores"].numpy()[:, 1], rtol=1e-5
    )


def test_regressor_outputs_a_fare_and_accepts_only_required_inputs(fare_transform, tmp_path):
    loaded, spec = _export(fare_transform, "taxi_fare", str(tmp_path / "fare"))
    assert "fare" not in loaded.signatures["serving_raw"].structured_input_signature[1]
    row = {"trip_miles": 2.5, "trip_seconds": 600, "payment_type": "Cash"}
    outputs = loaded.signatures["serving_raw"](**_named_tensors([row], spec))["outputs"].numpy()
    assert outputs.shape == (1,) and math.isfinite(float(outputs[0]))
    same = loaded.signatures["serving_default"](examples=tf.constant([to_example(row)]))["outputs"].numpy()
    np.testing.assert_allclose(outputs, same, rtol=1e-5)


@pytest.mark.parametrize("name", ["taxi_cab", ""])
def test_unknown_model_is_named(name):
    with pytest.raises(ValueError, match="unknown model"):
        features.model_spec({"model": name})
