"""Spans already ingested, kept so a retrain ingests only what is new.

A span's tf.Example split files and TFDV statistics depend only on its files and the split config, so an
entry is keyed by the span number, ExampleGen's fingerprint of the span's files (names, sizes, modification
times: a rewritten file is a new key), the split config and ``FORMAT``. Validation is not cached: it runs
on the statistics against the current schema in every run.

The store is a folder (local or ``gs://``, the pipeline root's): ``<key>/Split-<split>/`` holds a span's
two files, and ``<key>/COMPLETE`` is written last, so an entry a killed run left half-written is never
read (it is deleted and written again). After a run only the window's entries are kept.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath

import tensorflow as tf
from tfx.proto import example_gen_pb2

from components.window_ingest.ingest import EXAMPLES_FILE, STATISTICS_FILE

log = logging.getLogger(__name__)

FORMAT = "1"  # bump when what an entry holds changes: older entries are then never read
COMPLETE = "COMPLETE"


def entry_key(span: int, fingerprint: str, split_config: example_gen_pb2.SplitConfig) -> str:
    """``span-<N>-<hash>``: the span number shows, the hash covers what the entry was made from."""
    digest = hashlib.sha256(
        b"\0".join(
            [
                FORMAT.encode(),
                str(span).encode(),
                fingerprint.encode(),
                split_config.SerializeToString(deterministic=True),
            ]
        )
    ).hexdigest()[:16]
    return f"span-{span}-{digest}"


class SpanCache:
    """Entries under ``root``. ``folders`` below maps each split to the (examples, statistics) folders a
    span's ``EXAMPLES_FILE`` and ``STATISTICS_FILE`` are in, as the ingest writes them."""

    def __init__(self, root: str) -> None:
        self.root = root

    def _entry(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def restore(self, key: str, folders: dict[str, tuple[str, str]]) -> bool:
        """Copy a complete entry's files into ``folders``; False when there is none."""
        entry = self._entry(key)
        if not tf.io.gfile.exists(posixpath.join(entry, COMPLETE)):
            return False
        for split, (examples_dir, stats_dir) in folders.items():
            for name, target in ((EXAMPLES_FILE, examples_dir), (STATISTICS_FILE, stats_dir)):
                tf.io.gfile.makedirs(target)
                tf.io.gfile.copy(
                    posixpath.join(entry, f"Split-{split}", name),
                    posixpath.join(target, name),
                    overwrite=True,
                )
        return True

    def store(self, key: str, folders: dict[str, tuple[str, str]]) -> None:
        """Copy a span's files from ``folders`` into a new entry, ``COMPLETE`` last."""
        entry = self._entry(key)
        if tf.io.gfile.exists(entry):
            tf.io.gfile.rmtree(entry)  # half-written by a run that did not finish
        for split, (examples_dir, stats_dir) in folders.items():
            folder = posixpath.join(entry, f"Split-{split}")
            tf.io.gfile.makedirs(folder)
            for name, source in ((EXAMPLES_FILE, examples_dir), (STATISTICS_FILE, stats_dir)):
                tf.io.gfile.copy(posixpath.join(source, name), posixpath.join(folder, name), overwrite=True)
        with tf.io.gfile.GFile(posixpath.join(entry, COMPLETE), "w") as handle:
            handle.write("")

    def keep_only(self, keys: set[str]) -> None:
        """Delete every entry not in ``keys`` (spans that left the window, files that changed)."""
        if not tf.io.gfile.isdir(self.root):
            return
        for name in tf.io.gfile.listdir(self.root):
            name = name.rstrip("/")
            if name not in keys:
                tf.io.gfile.rmtree(self._entry(name))
                log.debug("span cache: dropped %s", name)
