"""Reads and writes the serving files TF Serving polls: ``models.config`` and its neighbours.

One ``models.config`` may serve several models, each released by its own pipeline, so every write
re-reads the file under an exclusive lock (``fcntl.flock``; on object stores a compare-and-swap on
the content) and replaces only its own model's entry. Files are written to a temp name, fsynced and
renamed, so the server never polls a half-written config. A config that does not parse fails with
its file and line, and nothing is written.

Beside the TF Serving config, each model has a small JSON release record (``.release/<model>.json``)
with what the config cannot hold: generation, rollback window, traffic weights and verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf import empty_pb2, text_format
from google.protobuf.message import DecodeError
from tensorflow_serving.config import model_server_config_pb2

from release.serving_dir import (
    BATCHING_NAME,
    CONFIG_NAME,
    LOCK_NAME,
    METRICS_PATH,
    MONITORING_NAME,
    is_uri,
    join,
    read_text,
    record_path,
    write_text_atomic,
)
from release.state import ReleaseState, make_state
from tfx_canary.errors import CanaryError, ConfigError

BATCHING_TEXT = """\
max_batch_size { value: 128 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
"""
MONITORING_TEXT = f"""\
prometheus_config {{
  enable: true
  path: "{METRICS_PATH}"
}}
"""

_RECORD_FIELDS = (
    "generation",
    "retain_until",
    "rollback_to",
    "rejected",
    "canary_weight",
    "shadow_fraction",
    "step",
    "verdict",
    "hold_reason",
)
# TF's checkpoint index is an SSTable; its footer ends with this magic number (table/format.h).
_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")


class CorruptVersion(CanaryError, ValueError):
    """A version directory is missing or incomplete, so it must not be listed in the config."""


class ConcurrentUpdate(CanaryError, RuntimeError):
    """Another writer kept changing the config while this one tried to write it."""


class LockTimeout(CanaryError, TimeoutError):
    """Another writer has held the config lock for too long."""


@contextlib.contextmanager
def _exclusive(serving_root: str, timeout_s: float = 60.0) -> Iterator[None]:
    """An exclusive lock across processes and threads (flock locks each open file description)."""
    if is_uri(serving_root):
        yield  # object stores: update_release compares content before writing instead
        return
    os.makedirs(serving_root, exist_ok=True)
    with open(os.path.join(serving_root, LOCK_NAME), "a+") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockTimeout(
                        f"another writer has held {lock.name} for over {timeout_s:.0f}s; is it stuck?"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


# ---- models.config ----


def parse_config(text: str, source: str) -> model_server_config_pb2.ModelServerConfig:
    """Parse and check a text ModelServerConfig the way TF Serving would."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        line, column = e.GetLine(), e.GetColumn()
        message = str(e).split(" : ", 1)[-1]
        raise ConfigError(f"{source}:{line}:{column}: not a valid ModelServerConfig: {message}") from None
    if config.HasField("custom_model_config"):
        raise ConfigError(f"{source}: custom_model_config is not supported; use model_config_list")
    seen: set[str] = set()
    for entry in config.model_config_list.config:
        where = f"{source}: model {entry.name!r}"
        if not entry.name:
            raise ConfigError(f"{source}: a model entry has no name")
        if entry.name in seen:
            raise ConfigError(f"{where} is listed more than once")
        seen.add(entry.name)
        if not (entry.base_path.startswith("/") or is_uri(entry.base_path)):
            raise ConfigError(f"{where}: base_path {entry.base_path!r} must be absolute or a URI")
        versions = set(entry.model_version_policy.specific.versions)
        for label, version in entry.version_labels.items():
            if versions and version not in versions:
                raise ConfigError(
                    f"{where}: label {label!r} points at version {version}, which is not listed"
                )
    return config


def render_config(config: model_server_config_pb2.ModelServerConfig) -> str:
    return text_format.MessageToString(config)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def find_entry(config: model_server_config_pb2.ModelServerConfig, model: str):
    for entry in config.model_config_list.config:
        if entry.name == model:
            return entry
    return None


def state_from(config: model_server_config_pb2.ModelServerConfig, record: dict, model: str) -> ReleaseState:
    entry = find_entry(config, model)
    versions = list(entry.model_version_policy.specific.versions) if entry is not None else []
    labels = dict(entry.version_labels) if entry is not None else {}
    fields = {k: record[k] for k in _RECORD_FIELDS if k in record}
    if "rejected" in fields:
        fields["rejected"] = tuple(sorted(int(v) for v in fields["rejected"]))
    return make_state(model, versions, labels, **fields)


def apply_state(
    config: model_server_config_pb2.ModelServerConfig, state: ReleaseState, base_path: str
) -> model_server_config_pb2.ModelServerConfig:
    """A copy of ``config`` with only ``state.model``'s entry replaced; other models are untouched."""
    new = model_server_config_pb2.ModelServerConfig()
    new.CopyFrom(config)
    entry = find_entry(new, state.model)
    if entry is None:
        entry = new.model_config_list.config.add(name=state.model, base_path=base_path)
    if not entry.model_platform and not entry.model_type:
        entry.model_platform = "tensorflow"
    entry.model_version_policy.ClearField("policy_choice")
    entry.model_version_policy.specific.versions.extend(state.versions)
    if not state.versions:
        entry.model_version_policy.specific.SetInParent()
    entry.ClearField("version_labels")
    entry.version_labels.update(state.label_map)
    return new


def record_of(state: ReleaseState) -> dict:
    record = {k: getattr(state, k) for k in _RECORD_FIELDS}
    record["rejected"] = list(state.rejected)
    return record


# ---- the release of one model ----


@dataclass(frozen=True)
class Snapshot:
    """The model's release state with the exact config text it was read from."""

    state: ReleaseState
    config_text: str
    base_path: str
    config_path: str

    @property
    def config_sha256(self) -> str:
        return sha256(self.config_text)


@dataclass(frozen=True)
class Update:
    before: Snapshot
    after: Snapshot

    @property
    def changed(self) -> bool:
        return self.before.state != self.after.state


def _read(
    serving_root: str, model: str, base_path: str | None
) -> tuple[Snapshot, model_server_config_pb2.ModelServerConfig]:
    path = join(serving_root, CONFIG_NAME)
    text = read_text(path) or ""
    config = parse_config(text, path)
    record_text = read_text(record_path(serving_root, model))
    try:
        record = json.loads(record_text) if record_text else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{record_path(serving_root, model)}:{e.lineno}: not valid JSON: {e.msg}") from None
    entry = find_entry(config, model)
    if entry is not None:
        base_path = entry.base_path
    base_path = base_path or join(serving_root, model)
    if not is_uri(base_path):
        base_path = os.path.abspath(base_path)
    return Snapshot(state_from(config, record, model), text, base_path, path), config


def read_release(serving_root: str, model: str, base_path: str | None = None) -> Snapshot:
    """The model's current release state (no lock: a consistent file is always on disk)."""
    return _read(serving_root, model, base_path)[0]


def update_release(
    serving_root: str,
    model: str,
    change: Callable[[ReleaseState], ReleaseState],
    base_path: str | None = None,
    attempts: int = 5,
) -> Update:
    """Read-modify-write the model's entry under the lock; a no-op change writes nothing."""
    for _ in range(attempts):
        with _exclusive(serving_root):
            before, config = _read(serving_root, model, base_path)
            state = change(before.state)
            if state == before.state:
                return Update(before, before)
            state = dataclasses.replace(state, model=model, generation=before.state.generation + 1)
            text = render_config(apply_state(config, state, before.base_path))
            if is_uri(serving_root) and (read_text(before.config_path) or "") != before.config_text:
                continue  # someone else wrote meanwhile: redo the change on their config
            write_support_files(serving_root)
            write_text_atomic(record_path(serving_root, model), json.dumps(record_of(state), indent=1) + "\n")
            write_text_atomic(before.config_path, text)
            return Update(before, Snapshot(state, text, before.base_path, before.config_path))
    raise ConcurrentUpdate(
        f"{join(serving_root, CONFIG_NAME)} changed under every one of {attempts} attempts"
    )


def write_support_files(serving_root: str) -> None:
    """Emit batching and monitoring configs once; later hand edits are kept."""
    for name, text in ((BATCHING_NAME, BATCHING_TEXT), (MONITORING_NAME, MONITORING_TEXT)):
        path = join(serving_root, name)
        if read_text(path) is None:
            write_text_atomic(path, text)


# ---- version directories ----


def verify_version(base_path: str, version: int) -> str:
    """Check a pushed version directory is complete before it is listed; returns its path.

    Checks: saved_model.pb parses as a protobuf, the variables index has its SSTable footer and
    every data shard the shard names promise exists. None of this needs TensorFlow locally.
    """
    directory = join(base_path, str(int(version)))
    fs = _RemoteFs() if is_uri(directory) else _LocalFs()
    if not fs.isdir(directory):
        raise CorruptVersion(f"version directory {directory} does not exist")
    graph = join(directory, "saved_model.pb")
    data = fs.read_bytes(graph)
    if not data:
        raise CorruptVersion(f"{graph} is missing or empty: the copy of version {version} is incomplete")
    try:
        empty_pb2.Empty.FromString(data)
    except DecodeError:
        raise CorruptVersion(
            f"{graph} is not a valid protobuf: the copy of version {version} is corrupt"
        ) from None
    variables = join(directory, "variables")
    if fs.isdir(variables):
        names = fs.listdir(variables)
        index = fs.read_bytes(join(variables, "variables.index"))
        if not index or not index.endswith(_TABLE_MAGIC):
            raise CorruptVersion(f"{variables}/variables.index is missing or truncated (version {version})")
        shards = [m for m in map(_SHARD.match, names) if m]
        expected = {int(m.group(2)) for m in shards}
        if len(expected) != 1 or len(shards) != expected.pop():
            raise CorruptVersion(f"{variables}: variable data shards are missing (version {version})")
    return directory


class _LocalFs:
    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def read_bytes(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""


class _RemoteFs:
    def __init__(self) -> None:
        from tensorflow.io import gfile  # only object stores need TensorFlow

        self.gfile = gfile

    def isdir(self, path: str) -> bool:
        return self.gfile.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return [name.rstrip("/") for name in self.gfile.listdir(path)]

    def read_bytes(self, path: str) -> bytes:
        if not self.gfile.exists(path):
            return b""
        with self.gfile.GFile(path, "rb") as f:
            return f.read()
