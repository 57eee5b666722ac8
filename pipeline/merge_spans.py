"""MergeSpans: the validated span window as ONE Examples artifact that Transform and Evaluator read.

Transform builds a Beam read, a TF-graph load and a write per input artifact and split: with a window of
16 span artifacts that was most of a first run (measured with ``benchmarks/pipeline_bench.py``), while
copying the window's TFRecord files (~2 MB for all 15k rows) into one artifact takes well under a second.
MLMD records the span artifacts as this component's inputs, so the lineage of a model still names every
span it was trained on.
"""

import json
import posixpath

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils, standard_artifacts

from pipeline.window import span_of


@tfx.dsl.components.component
def MergeSpans(
    spans: tfx.dsl.components.InputArtifact[list[standard_artifacts.Examples]],
    examples: tfx.dsl.components.OutputArtifact[standard_artifacts.Examples],
) -> None:
    """Copy every split of every span into ``examples``; the splits are those all spans share."""
    if not spans:
        raise ValueError("MergeSpans needs at least one span")
    splits = sorted(set.intersection(*(set(artifact_utils.decode_split_names(a.split_names)) for a in spans)))
    if not splits:
        raise ValueError("the spans share no split to merge")
    examples.split_names = artifact_utils.encode_split_names(splits)
    for split in splits:
        target = artifact_utils.get_split_uri([examples], split)
        tf.io.gfile.makedirs(target)
        for span in spans:
            source = artifact_utils.get_split_uri([span], split)
            for name in tf.io.gfile.listdir(source):
                tf.io.gfile.copy(
                    posixpath.join(source, name), posixpath.join(target, f"span-{span_of(span)}-{name}")
                )
    numbers = sorted(span_of(a) for a in spans)
    examples.set_int_custom_property("span", numbers[-1])
    examples.set_string_custom_property("spans", json.dumps(numbers))
    payload = {
        a.get_string_custom_property("payload_format")
        for a in spans
        if a.has_custom_property("payload_format")
    }
    if len(payload) == 1:
        examples.set_string_custom_property("payload_format", payload.pop())
