"""preprocessing_fn through real tf.Transform on Beam: encodings and labels of both models."""

import tensorflow as tf

from models import features

from .conftest import ROWS, raw_rows, taxi_spec, to_example


def test_tips_features_are_encoded_and_label_is_big_tipper(tips_transform):
    _, output = tips_transform
    spec = taxi_spec("taxi_tips")
    names = set(output.transformed_feature_spec())
    assert names == {features.transformed_name(k) for k in spec.input_keys} | {spec.label_key}
    rows = raw_rows()
    layer = output.transform_features_layer()
    raw_spec = output.raw_feature_spec()
    parsed = tf.io.parse_example([to_example(r) for r in rows], raw_spec)
    result = layer(parsed)
    expected = [int(r["tips"] > 0.2 * r["fare"]) for r in rows]
    assert result[spec.label_key].numpy().tolist() == expected
    miles = result["trip_miles_xf"].numpy()
    assert abs(miles.mean()) < 1e-3 and len(miles) == ROWS  # z-scored
    assert set(result["pickup_latitude_xf"].numpy().tolist()) <= set(range(features.BUCKET_COUNT + 1))
    assert result["trip_start_hour_xf"].numpy().tolist() == [r["trip_start_hour"] for r in rows]
    # company is missing in some rows: it is filled in, not dropped
    assert any("company" not in r for r in rows)
    assert result["company_xf"].shape == (ROWS,)


def test_fare_model_does_not_read_the_fare(fare_transform):
    _, output = fare_transform
    names = set(output.transformed_feature_spec())
    assert "fare_xf" not in names and "fare_label_xf" in names
    rows = raw_rows()
    result = output.transform_features_layer()(
        tf.io.parse_example([to_example(r) for r in rows], output.raw_feature_spec())
    )
    assert result["fare_label_xf"].numpy().tolist() == [
        float(tf.constant(r["fare"], tf.float32).numpy()) for r in rows
    ]
