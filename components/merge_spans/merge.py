"""MergeSpans' logic: copy every split of every span artifact into one Examples artifact.

Transform builds a Beam read, a TF-graph load and a write per input artifact and split: with a window of
16 span artifacts that was most of a first run (measured with ``benchmarks/pipeline_bench.py``), while
copying the window's TFRecord files (~2 MB for all 15k rows) into one artifact takes well under a second.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import tensorflow as tf
from tfx import types
from tfx.types import artifact_utils

from components.spans import artifact_span

DATA_FINGERPRINT = "data_fingerprint"


def data_fingerprint(spans: list[types.Artifact]) -> str:
    """Equal exactly when a window holds the same span files (span number and ExampleGen's fingerprint of
    the span's files: names, sizes, modification times)."""

    def identity(span: types.Artifact) -> str:
        if span.has_custom_property("input_fingerprint"):
            return span.get_string_custom_property("input_fingerprint")
        return span.uri

    parts = sorted(f"{artifact_span(a)}:{identity(a)}" for a in spans)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def merge_spans(spans: list[types.Artifact], examples: types.Artifact) -> None:
    """Copy every split of every span into ``examples``; the splits are those all spans share."""
    if not spans:
        raise ValueError("MergeSpans needs at least one span")
    splits_of = {artifact_span(a): sorted(artifact_utils.decode_split_names(a.split_names)) for a in spans}
    splits = sorted(set().union(*map(set, splits_of.values())))
    odd = {span: names for span, names in splits_of.items() if names != splits}
    if odd or not splits:
        raise ValueError(
            f"the spans of the window do not have the same splits (spans {sorted(odd)} have "
            f"{sorted(map(tuple, odd.values()))}, the window needs {splits}): they were ingested by an older "
            "tfx-canary. Start a new project home (--home), or delete this home's pipelines/ folder and "
            "metadata.sqlite, so every span is ingested and validated again"
        )
    examples.split_names = artifact_utils.encode_split_names(splits)
    for split in splits:
        target = artifact_utils.get_split_uri([examples], split)
        tf.io.gfile.makedirs(target)
        for span in spans:
            source = artifact_utils.get_split_uri([span], split)
            for name in tf.io.gfile.listdir(source):
                tf.io.gfile.copy(
                    posixpath.join(source, name), posixpath.join(target, f"span-{artifact_span(span)}-{name}")
                )
    numbers = sorted(artifact_span(a) for a in spans)
    examples.set_int_custom_property("span", numbers[-1])
    examples.set_string_custom_property("spans", json.dumps(numbers))
    examples.set_string_custom_property(DATA_FINGERPRINT, data_fingerprint(spans))
    payload = {
        a.get_string_custom_property("payload_format")
        for a in spans
        if a.has_custom_property("payload_format")
    }
    if len(payload) == 1:
        examples.set_string_custom_property("payload_format", payload.pop())
