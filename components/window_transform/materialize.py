"""Transformed examples from a transform graph that exists already, in plain TensorFlow (no Beam).

A warm retrain reuses the blessed model's analysis (``reuse``), so only applying the graph is left.
tf.Transform's Beam pipeline costs about 16 s of fixed cost on the local runner for that; this applies
the same graph (``TFTransformOutput``'s Keras layer, as the exported model does) split by split, and
encodes the outputs with what TFX's Transform uses to write them (tf.Transform's tensor-to-Arrow
converter, tfx_bsl's ``RecordBatchToExamplesEncoder``): one gzipped TFRecord file per split, named like
the one shard TFX writes.
"""

from __future__ import annotations

import posixpath

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import impl_helper
from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

BATCH_SIZE = 1024
SHARD_SUFFIX = "-00000-of-00001.gz"  # Beam's WriteToTFRecord name for one shard, as TFX writes it


def materialize(transform_dir: str, splits: list[tuple[str, str]], batch_size: int = BATCH_SIZE) -> list[int]:
    """For each ``(raw_pattern, output_prefix)`` of ``splits``: write the raw tf.Examples matching
    ``raw_pattern`` (gzipped TFRecords), transformed by the graph in ``transform_dir``, to
    ``<output_prefix>-00000-of-00001.gz``; return how many each split wrote.

    The graph is loaded and traced once for all splits, without AutoGraph (tf.Transform's layer has no
    tensor-dependent Python control flow): converting its code cost ~1 s a split."""
    output = tft.TFTransformOutput(transform_dir)
    raw_spec = output.raw_feature_spec()
    layer = output.transform_features_layer()
    schema = output.transformed_metadata.schema
    to_arrow = impl_helper.make_tensor_to_arrow_converter(schema)
    encoder = RecordBatchToExamplesEncoder(schema)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def transform(serialized):
        return layer(tf.io.parse_example(serialized, raw_spec))

    counts = []
    for raw_pattern, output_prefix in splits:
        files = sorted(tf.io.gfile.glob(raw_pattern))
        if not files:
            raise ValueError(f"no examples to transform: nothing matches {raw_pattern}")
        target = output_prefix + SHARD_SUFFIX
        partial = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.partial")
        tf.io.gfile.makedirs(posixpath.dirname(target))
        count = 0
        with tf.io.TFRecordWriter(partial, options="GZIP") as writer:
            for serialized in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
                for record in encoder.encode(to_arrow.convert(transform(serialized))):
                    writer.write(record)
                    count += 1
        tf.io.gfile.rename(partial, target, overwrite=True)  # a reader never sees a half-written file
        counts.append(count)
    return counts
