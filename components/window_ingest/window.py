"""Which spans make the training window, and how the clean ones become one Examples artifact.

Plain functions (no TFX component): the window is read from the data root's folders, not from MLMD, so
it is the same on every runner: the latest ``num_spans`` spans present, each validated in this run; a
span with anomalies is left out with its reasons, the clean ones are merged.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

DATA_FINGERPRINT = "data_fingerprint"
TRAINED_AS = "trained_as"  # the version already trained on exactly this window (0: none)
SPANS_MANIFEST = "spans.json"  # in the window's folder: {span: fingerprint of its files}


def present_spans(input_base: str, pattern: str) -> list[int]:
    """Span numbers with a folder (or file) matching ``pattern`` (``{SPAN}`` one number) under the root."""
    if pattern.count("{SPAN}") != 1:
        raise ValueError(f"the input pattern {pattern!r} must hold {{SPAN}} exactly once")
    head = pattern.split("{SPAN}")[0]
    tail = pattern.split("{SPAN}")[1].split("/")[0]
    matcher = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"$")
    found = set()
    for path in tf.io.gfile.glob(posixpath.join(input_base, head + "*" + tail)):
        relative = path[len(input_base.rstrip("/")) + 1 :]
        match = matcher.match(relative)
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def latest(spans: list[int], num_spans: int) -> list[int]:
    if num_spans < 1:
        raise ValueError(f"the span window must hold at least one span, not {num_spans}")
    return sorted(spans)[-num_spans:]


def data_fingerprint(fingerprints: dict[int, str]) -> str:
    """Equal exactly when a window holds the same span files (span number and ExampleGen's fingerprint of
    the span's files: names, sizes, modification times)."""
    parts = sorted(f"{span}:{fingerprint}" for span, fingerprint in fingerprints.items())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def anomaly_words(found: anomalies_pb2.Anomalies) -> list[str]:
    """Each anomaly as ``feature: description`` (or the dataset-level description), for the run summary."""
    words = [
        f"{name}: {info.short_description or info.description}"
        for name, info in sorted(found.anomaly_info.items())
    ]
    if found.HasField("dataset_anomaly_info"):
        info = found.dataset_anomaly_info
        words.append(info.short_description or info.description)
    return words


def merge_into(
    split_dirs: dict[tuple[int, str], str], spans: list[int], splits: list[str], target_uri: str
) -> None:
    """Move every split file of every span in ``spans`` into ``<target_uri>/Split-<split>/``, named by span
    (``span-<N>-<file>``), so Transform reads one artifact and a file still says which span it holds."""
    for split in splits:
        target = posixpath.join(target_uri, f"Split-{split}")
        tf.io.gfile.makedirs(target)
        for span in spans:
            source = split_dirs[(span, split)]
            for name in tf.io.gfile.listdir(source):
                tf.io.gfile.rename(
                    posixpath.join(source, name), posixpath.join(target, f"span-{span}-{name}")
                )


def write_manifest(examples_uri: str, fingerprints: dict[int, str]) -> None:
    """Which spans the window holds and the fingerprint of each one's files (Transform's cache keys)."""
    with tf.io.gfile.GFile(posixpath.join(examples_uri, SPANS_MANIFEST), "w") as handle:
        json.dump({str(span): fp for span, fp in sorted(fingerprints.items())}, handle, sort_keys=True)
