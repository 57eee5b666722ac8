"""The tf.Transform ``preprocessing_fn`` shared by both models.

Transform runs it over the full training window (analyzers: means, vocabularies, quantiles) and the
same graph is embedded in the exported model, so training and serving encode features identically.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import contract, features


def fill_in_missing(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """A rank-1 dense tensor with missing values of a [batch, <=1] sparse feature set to 0 or ''."""
    if not isinstance(x, tf.SparseTensor):
        return tf.reshape(x, [-1])
    default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    return tf.squeeze(dense, axis=1)


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Encode the inputs of the model named in ``custom_config`` and compute its label."""
    spec = features.model_spec(custom_config)
    outputs = {}
    for key in spec.input_keys:
        value = fill_in_missing(inputs[key])
        name = features.transformed_name(key)
        if key in features.DENSE_FLOAT_KEYS:
            outputs[name] = tft.scale_to_z_score(tf.cast(value, tf.float32))
        elif key in features.VOCAB_KEYS:
            outputs[name] = tft.compute_and_apply_vocabulary(
                value, top_k=features.VOCAB_SIZE, num_oov_buckets=features.OOV_SIZE
            )
        elif key in features.BUCKET_KEYS:
            outputs[name] = tft.bucketize(value, features.BUCKET_COUNT)
        elif key in features.CATEGORICAL_KEYS:
            size = features.CATEGORICAL_KEYS[key]
            outputs[name] = tf.clip_by_value(value, 0, size - 1)
        elif key in features.HASHED_INT_KEYS:
            outputs[name] = tf.strings.to_hash_bucket_fast(tf.strings.as_string(value), features.HASH_BUCKETS)
        else:
            raise ValueError(f"no encoding defined for input feature {key!r}")

    fare = fill_in_missing(inputs["fare"])
    if spec.task == contract.BINARY:
        tips = fill_in_missing(inputs["tips"])
        # A big tipper tipped more than 20% of the fare.
        outputs[spec.label_key] = tf.cast(tf.greater(tips, fare * 0.2), tf.int64)
    else:
        outputs[spec.label_key] = tf.cast(fare, tf.float32)
    return outputs
