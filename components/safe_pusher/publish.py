"""Publish a SavedModel into a TF Serving version directory without ever exposing a partial copy.

TF Serving loads any integer-named child of a model's base directory as soon as it appears, so a
version must only appear complete. ``publish_model``:

1. picks a fresh version: unix seconds, or one more than the highest existing version;
2. copies the model into a non-integer sibling (``release.serving_dir.staging_name``, which TF Serving
   ignores) and writes the extra files (``assets.extra/...``) into that staged copy;
3. verifies the staged copy (``saved_model.pb`` present, every source file present with its size);
4. makes it visible: a POSIX ``rename`` on local disks (atomic). On object stores (``gs://``,
   ``s3://``), where rename is a copy, it copies the verified staging into ``<version>`` with
   ``saved_model.pb`` **last**, so a version there is complete exactly when ``saved_model.pb``
   exists in it; readers (and TF Serving, which needs it to load) rely on that.

Any failure removes the staging and any partial ``<version>`` folder, so nothing half-written is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import time
from collections.abc import Callable, Mapping

import tensorflow as tf

from release.serving_dir import SAVED_MODEL_FILE, TRAINING_DATA_FILE, is_uri, list_versions, staging_name
from tfx_canary.errors import CanaryError

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.pb"


class PublishError(CanaryError, RuntimeError):
    """The staged copy is incomplete or the version could not be made visible."""


def _join(*parts: str) -> str:
    return posixpath.join(*parts)  # also right for local paths: this project runs on POSIX systems


def list_files(root: str) -> dict[str, int]:
    """Relative path → size of every file under ``root``."""
    files = {}
    for directory, _, names in tf.io.gfile.walk(root):
        for name in names:
            full = _join(directory, name)
            rel = full[len(root) :].lstrip("/")
            files[rel] = tf.io.gfile.stat(full).length
    return files


def model_identity(model_dir: str) -> str:
    """A content hash that is equal for copies of the same SavedModel (fingerprint.pb, else files)."""
    fingerprint = _join(model_dir, FINGERPRINT_FILE)
    digest = hashlib.sha256()
    if tf.io.gfile.exists(fingerprint):
        digest.update(tf.io.gfile.GFile(fingerprint, "rb").read())
        return digest.hexdigest()
    for rel in sorted(f for f in list_files(model_dir) if not f.startswith("assets.extra")):
        digest.update(rel.encode())
        digest.update(tf.io.gfile.GFile(_join(model_dir, rel), "rb").read())
    return digest.hexdigest()


def find_published_version(source_dir: str, model_base_dir: str) -> int | None:
    """The version under ``model_base_dir`` that already holds this model, if any."""
    identity = model_identity(source_dir)
    for version in reversed(list_versions(model_base_dir)):
        candidate = _join(model_base_dir, str(version))
        if tf.io.gfile.exists(_join(candidate, SAVED_MODEL_FILE)) and model_identity(candidate) == identity:
            return version
    return None


def find_version_trained_on(training: dict, model_base_dir: str) -> int | None:
    """The version under ``model_base_dir`` that was trained on exactly this data, if any."""
    for version in reversed(list_versions(model_base_dir)):
        path = _join(model_base_dir, str(version), TRAINING_DATA_FILE)
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "r") as handle:
            try:
                recorded = json.loads(handle.read())
            except ValueError:
                continue
        if recorded.get("fingerprint") == training["fingerprint"]:
            return version
    return None


def next_version(model_base_dir: str, now: Callable[[], float] = time.time) -> int:
    """Unix seconds, or one more than the highest existing version if that is not newer."""
    versions = list_versions(model_base_dir)
    return max(int(now()), versions[-1] + 1 if versions else 0)


def _copy_tree(source: str, target: str, files: Mapping[str, int], last: str | None = None) -> None:
    """Copy ``files`` from source to target, the file named ``last`` after all the others."""
    ordered = sorted(files, key=lambda rel: rel == last)
    for rel in ordered:
        destination = _join(target, rel)
        tf.io.gfile.makedirs(posixpath.dirname(destination))
        tf.io.gfile.copy(_join(source, rel), destination, overwrite=True)


def _verify(staged: str, expected: Mapping[str, int]) -> None:
    actual = list_files(staged)
    if SAVED_MODEL_FILE not in actual:
        raise PublishError(f"staged copy {staged} has no {SAVED_MODEL_FILE}")
    missing = sorted(rel for rel in expected if rel not in actual)
    wrong = sorted(rel for rel in expected if rel in actual and actual[rel] != expected[rel])
    if missing or wrong:
        raise PublishError(
            f"staged copy {staged} differs from the source: missing {missing}, wrong size {wrong}"
        )


def _remove(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def publish_model(
    source_dir: str,
    model_base_dir: str,
    extra_files: Mapping[str, bytes] | None = None,
    now: Callable[[], float] = time.time,
) -> int:
    """Copy the SavedModel at ``source_dir`` to ``<model_base_dir>/<new version>``; return the version.

    ``extra_files`` maps paths relative to the version folder (``assets.extra/mlmd_uuid``) to bytes
    written into the staged copy before it becomes visible.
    """
    source_dir, model_base_dir = str(source_dir), str(model_base_dir)
    source_files = list_files(source_dir)
    if SAVED_MODEL_FILE not in source_files:
        raise PublishError(f"{source_dir} is not a SavedModel: no {SAVED_MODEL_FILE}")
    tf.io.gfile.makedirs(model_base_dir)
    version = next_version(model_base_dir, now)
    staging = _join(model_base_dir, staging_name(version))
    _remove(staging)
    try:
        _copy_tree(source_dir, staging, source_files)
        for rel, content in (extra_files or {}).items():
            path = _join(staging, rel)
            tf.io.gfile.makedirs(posixpath.dirname(path))
            with tf.io.gfile.GFile(path, "wb") as handle:
                handle.write(content)
        _verify(staging, source_files)
        version = _make_visible(staging, model_base_dir, version, source_files, extra_files or {})
    except BaseException:
        _remove(staging)
        raise
    log.info("published %s as version %d under %s", source_dir, version, model_base_dir)
    return version


def _make_visible(
    staging: str,
    model_base_dir: str,
    version: int,
    source_files: Mapping[str, int],
    extra: Mapping[str, bytes],
) -> int:
    if not is_uri(model_base_dir):
        for _ in range(100):  # another pusher may take the same second: then use the next number
            try:
                os.rename(staging, os.path.join(model_base_dir, str(version)))
                return version
            except OSError:
                if not os.path.exists(os.path.join(model_base_dir, str(version))):
                    raise
                version += 1
        raise PublishError(f"no free version number under {model_base_dir}")
    while tf.io.gfile.exists(_join(model_base_dir, str(version))):
        version += 1
    final = _join(model_base_dir, str(version))
    try:
        staged_files = list_files(staging)
        _copy_tree(staging, final, staged_files, last=SAVED_MODEL_FILE)
        _verify(final, {**source_files, **{rel: len(data) for rel, data in extra.items()}})
    except BaseException:
        _remove(final)
        raise
    _remove(staging)
    return version
