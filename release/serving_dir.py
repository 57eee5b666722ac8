"""The serving-directory contract: what the pipeline writes and TF Serving (or the embedded server) reads.

One serving root holds, for every model, the integer-named version folders TF Serving loads, the
``models.config`` it polls, and beside them the files that only this project reads::

    <serving_root>/models.config                       the text ModelServerConfig TF Serving polls
    <serving_root>/batching_parameters.txt, monitoring.config
    <serving_root>/.release/<model>.json               the release record (weights, step, verdict)
    <serving_root>/<model>/<version>/                  a SavedModel, visible only once complete
    <serving_root>/<model>/.<version>.tmp/             the same version while it is being written
    <serving_root>/<model>/<version>/assets.extra/tf_serving_warmup_requests, mlmd_uuid,
                                       tfx_canary_training_data.json

Every other module takes these names and rules from here. Files are replaced atomically: written under
a temporary name, fsynced and renamed (local disks), or uploaded whole (object stores).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable

from serving.paths import (
    DEFAULT_PROMETHEUS_PATH,
    MAX_WARMUP_RECORDS,
    SAVED_MODEL_FILE,
    WARMUP_FILE,
    version_of,
)
from tfx_canary.home import is_uri, join

__all__ = [
    "BATCHING_NAME",
    "CONFIG_NAME",
    "LOCK_NAME",
    "MAX_WARMUP_RECORDS",
    "METRICS_PATH",
    "MLMD_UUID_FILE",
    "MONITORING_NAME",
    "RECORD_DIR",
    "SAVED_MODEL_FILE",
    "TRAINING_DATA_FILE",
    "WARMUP_FILE",
    "is_staging",
    "is_uri",
    "join",
    "list_versions",
    "read_text",
    "record_path",
    "staging_name",
    "write_local_version",
    "write_text_atomic",
]

CONFIG_NAME = "models.config"
BATCHING_NAME = "batching_parameters.txt"
MONITORING_NAME = "monitoring.config"
RECORD_DIR = ".release"
LOCK_NAME = ".models.config.lock"
METRICS_PATH = DEFAULT_PROMETHEUS_PATH  # where the model server and the router export Prometheus metrics
MLMD_UUID_FILE = "assets.extra/mlmd_uuid"  # which MLMD model artifact and pipeline run made a version
TRAINING_DATA_FILE = "assets.extra/tfx_canary_training_data.json"  # the spans a version was trained on

_STAGING = re.compile(r"^\.(\d+)\.tmp$")


def staging_name(version: int) -> str:
    """The non-integer folder name a version is written under before it becomes visible."""
    return f".{int(version)}.tmp"


def is_staging(name: str) -> bool:
    """True for a folder left by a publish that has not finished (``.<version>.tmp``)."""
    return _STAGING.match(name) is not None


def record_path(serving_root: str, model: str) -> str:
    return join(serving_root, RECORD_DIR, f"{model}.json")


def _gfile():
    from tensorflow.io import gfile  # only object stores need TensorFlow

    return gfile


def list_versions(model_dir: str) -> list[int]:
    """The versions under a model's directory that TF Serving would load, ascending."""
    if is_uri(model_dir):
        gfile = _gfile()
        names = gfile.listdir(model_dir) if gfile.isdir(model_dir) else []
    else:
        names = [e.name for e in os.scandir(model_dir) if e.is_dir()] if os.path.isdir(model_dir) else []
    return sorted(v for v in map(version_of, names) if v is not None)


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    if path.startswith("gs://"):
        from release.object_store import GcsObject

        return GcsObject(path).read()[0]
    if is_uri(path):
        gfile = _gfile()
        if not gfile.exists(path):
            return None
        with gfile.GFile(path, "r") as f:
            return f.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_text_atomic(path: str, text: str) -> None:
    """Replace the file in one step: readers see the old or the new content, never a mix."""
    if path.startswith("gs://"):
        from release.object_store import GcsObject

        GcsObject(path).write(text)  # an object upload becomes visible whole
        return
    if is_uri(path):
        gfile = _gfile()
        gfile.makedirs(os.path.dirname(path))
        with gfile.GFile(path, "w") as f:  # an object upload becomes visible whole
            f.write(text)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_local_version(base_path: str | os.PathLike, version: int, write: Callable[[str], None]) -> str:
    """``write(staging)`` a model straight into a local ``<base_path>/<version>``: under the staging name
    first, then renamed, so the version only ever appears complete.

    For models built in place (fixtures, tests); a model that already exists is published with
    ``components.safe_pusher.publish.publish_model``.
    """
    base = os.fspath(base_path)
    os.makedirs(base, exist_ok=True)
    final = os.path.join(base, str(int(version)))
    if os.path.exists(final):
        raise FileExistsError(f"version directory {final} already exists")
    staging = os.path.join(base, staging_name(version))
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    os.rename(staging, final)
    return final
