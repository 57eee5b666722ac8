"""Per-span datasets of a merged window, with cache keys that stay the same from run to run.

WindowIngest writes ``<examples>/spans.json`` ({span: fingerprint of its files}) and names every
split file ``span-<N>-...``. A file pattern ``<examples>/Split-<split>/*`` of such an artifact becomes
one pattern per span, keyed ``span-<N>-<digest>-<split>``: equal exactly when the span's files are.
"""

from __future__ import annotations

import hashlib
import json
import posixpath

import tensorflow as tf

from components.window_ingest.window import SPANS_MANIFEST


def per_span(file_pattern: str) -> list[tuple[str, str]] | None:
    """(pattern, dataset key) per span of the split ``file_pattern`` reads, or None when the pattern is
    not a whole split of a window (another artifact, or a per-span pattern already)."""
    if not file_pattern.endswith("/*"):
        return None
    split_dir = file_pattern[: -len("/*")]
    manifest = posixpath.join(posixpath.dirname(split_dir), SPANS_MANIFEST)
    if not tf.io.gfile.exists(manifest):
        return None
    with tf.io.gfile.GFile(manifest) as handle:
        fingerprints = json.load(handle)
    split = posixpath.basename(split_dir).removeprefix("Split-")
    return [
        (posixpath.join(split_dir, f"span-{span}-*"), dataset_key(int(span), fingerprint, split))
        for span, fingerprint in sorted(fingerprints.items(), key=lambda item: int(item[0]))
    ]


def dataset_key(span: int, fingerprint: str, split: str) -> str:
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
    return f"span-{span}-{digest}-{split}"
