"""Reads and writes the serving files TF Serving polls: ``models.config`` and its neighbours.

One ``models.config`` may serve several models, each released by its own pipeline, so every write
re-reads the file under an exclusive lock (``fcntl.flock``; on object stores a compare-and-swap on
the content) and replaces only its own model's entry. Files are written to a temp name, fsynced and
renamed, so the server never polls a half-written config. A config that does not parse fails with
its file and line, and nothing is written.

Each model's release record (what the config cannot hold: generation, rollback window, traffic
weights, step and verdict) is kept in the same file, as a comment line TF Serving ignores::

    # tfx-canary:release taxi_tips {"canary_weight": 0.25, "generation": 7, ...}

so a release step is ONE write of ONE file: on a local disk one rename, on ``gs://`` one upload with a
generation precondition. There is no moment at which the labels and the record disagree. (Homes made
before kept the record in ``.release/<model>.json``; it is read until the model's next write.)
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

from release.object_store import GcsObject, PreconditionLost
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
    if serving_root.startswith("gs://"):
        from release.object_store import GcsLock

        with GcsLock(join(serving_root, LOCK_NAME), timeout_s=timeout_s):
            yield
        return
    if is_uri(serving_root):
        yield  # other object stores: update_release compares content before writing instead
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


_RECORD_LINE = re.compile(r"^# tfx-canary:release (\S+) (\{.*\})$", re.MULTILINE)
_RECORDS_HEADER = "# Release records of tfx-canary (one line a model; TF Serving ignores comments):"


def parse_records(text: str, source: str) -> dict[str, dict]:
    """Model -> release record, from the comment lines of a ``models.config``."""
    records = {}
    for match in _RECORD_LINE.finditer(text):
        try:
            records[match[1]] = json.loads(match[2])
        except json.JSONDecodeError as e:
            line = text[: match.start()].count("\n") + 1
            raise ConfigError(
                f"{source}:{line}: the release record of {match[1]} is not valid JSON: {e.msg}"
            ) from None
    return records


def render_config(
    config: model_server_config_pb2.ModelServerConfig, records: dict[str, dict] | None = None
) -> str:
    """The text ``models.config``: TF Serving's part, then one release-record comment per model."""
    text = text_format.MessageToString(config)
    if records:
        lines = [
            f"# tfx-canary:release {model} {json.dumps(records[model], sort_keys=True)}"
            for model in sorted(records)
        ]
        text += "\n".join([_RECORDS_HEADER, *lines]) + "\n"
    return text


def _legacy_record(serving_root: str, model: str) -> dict:
    """A record a home made before kept beside the config (``.release/<model>.json``)."""
    path = record_path(serving_root, model)
    text = read_text(path)
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


@dataclass(frozen=True)
class _Read:
    snapshot: Snapshot
    config: model_server_config_pb2.ModelServerConfig
    records: dict[str, dict]  # every model's record in this config
    generation: int | None  # of the models.config object on gs:// (None elsewhere)


def _read_all(serving_root: str, model: str, base_path: str | None) -> _Read:
    path = join(serving_root, CONFIG_NAME)
    generation = None
    if path.startswith("gs://"):
        text, generation = GcsObject(path).read()
        text = text or ""
    else:
        text = read_text(path) or ""
    config = parse_config(text, path)
    records = parse_records(text, path)
    record = records[model] if model in records else _legacy_record(serving_root, model)
    entry = find_entry(config, model)
    if entry is not None:
        base_path = entry.base_path
    base_path = base_path or join(serving_root, model)
    if not is_uri(base_path):
        base_path = os.path.abspath(base_path)
    return _Read(
        Snapshot(state_from(config, record, model), text, base_path, path), config, records, generation
    )


def _read(
    serving_root: str, model: str, base_path: str | None
) -> tuple[Snapshot, model_server_config_pb2.ModelServerConfig]:
    read = _read_all(serving_root, model, base_path)
    return read.snapshot, read.config


def read_release(serving_root: str, model: str, base_path: str | None = None) -> Snapshot:
    """The model's current release state (no lock: a consistent file is always on disk)."""
    return _read(serving_root, model, base_path)[0]


def record_of_model(serving_root: str, model: str) -> dict:
    """The model's release record as stored (with a transition still ``pending``, if any)."""
    read = _read_all(serving_root, model, None)
    return read.records.get(model) or _legacy_record(serving_root, model)


def _write(path: str, text: str, generation: int | None) -> None:
    """One write of ``models.config``: a rename on disk; on gs:// an upload replacing ``generation``."""
    if path.startswith("gs://"):
        GcsObject(path).write(text, if_generation=generation)
    else:
        write_text_atomic(path, text)


@dataclass(frozen=True)
class Pending:
    """A transition whose config generation was written but not yet recorded in the audit trail."""

    before: Snapshot
    after: Snapshot
    journal: dict  # what the caller said about it: kind, reason, actor, metrics, analysis


def update_release(
    serving_root: str,
    model: str,
    change: Callable[[ReleaseState], ReleaseState],
    base_path: str | None = None,
    attempts: int = 5,
    journal: dict | None = None,
) -> Update:
    """Read-modify-write the model's entry and record under the lock, in one write; a no-op change
    writes nothing. With ``journal``, the new record also holds the transition until it is recorded in
    the audit trail (``recover``, ``clear_pending``). On ``gs://`` the write carries the generation it
    replaces; a writer that lost a race (its lock expired) starts again on the new file."""
    for _ in range(attempts):
        with _exclusive(serving_root):
            read = _read_all(serving_root, model, base_path)
            before = read.snapshot
            state = change(before.state)
            if state == before.state:
                return Update(before, before)
            state = dataclasses.replace(state, model=model, generation=before.state.generation + 1)
            record = record_of(state)
            previous = read.records.get(model, {})
            if journal is not None:
                record["pending"] = {
                    **journal,
                    "generation": state.generation,
                    "before_config": before.config_text,
                    "after_state": {
                        "versions": list(state.versions),
                        "labels": state.label_map,
                        "record": record_of(state),
                    },
                }
            elif previous.get("pending"):
                record["pending"] = previous["pending"]  # an earlier writer's transition waits to be recorded
            text = render_config(
                apply_state(read.config, state, before.base_path), {**read.records, model: record}
            )
            write_support_files(serving_root)
            try:
                _write(before.config_path, text, read.generation)
            except PreconditionLost:
                continue  # a writer on another machine won the race: redo the change on its config
            return Update(before, Snapshot(state, text, before.base_path, before.config_path))
    raise ConcurrentUpdate(
        f"{join(serving_root, CONFIG_NAME)} changed under every one of {attempts} attempts"
    )


def recover(serving_root: str, model: str, base_path: str | None = None) -> Pending | None:
    """A transition that was applied but not yet recorded (its writer died between the config write and
    the audit), for the caller to record and then ``clear_pending``; None when there is none."""
    with _exclusive(serving_root):
        read = _read_all(serving_root, model, base_path)
        pending = read.records.get(model, {}).get("pending")
        if not pending:
            return None
        before_text = pending["before_config"]
        before_config = parse_config(
            before_text, f"{CONFIG_NAME} (before generation {pending['generation']})"
        )
        before_records = parse_records(before_text, CONFIG_NAME)
        before_record = (
            before_records[model] if model in before_records else _legacy_record(serving_root, model)
        )
        before = Snapshot(
            state_from(before_config, before_record, model),
            before_text,
            read.snapshot.base_path,
            read.snapshot.config_path,
        )
        after = read.snapshot
        if after.state.generation != pending["generation"]:  # later writes carried it: rebuild that one
            written = pending["after_state"]
            fields = {k: v for k, v in written["record"].items() if k in _RECORD_FIELDS}
            fields["rejected"] = tuple(fields.get("rejected", ()))
            state = make_state(model, written["versions"], written["labels"], **fields)
            text = render_config(apply_state(before_config, state, after.base_path))
            after = Snapshot(state, text, after.base_path, after.config_path)
        journal = {k: v for k, v in pending.items() if k not in ("before_config", "after_state")}
        return Pending(before, after, journal)


def clear_pending(serving_root: str, model: str, generation: int) -> None:
    """The transition of ``generation`` is recorded: drop it from the release record (a config write)."""
    for _ in range(5):
        with _exclusive(serving_root):
            read = _read_all(serving_root, model, None)
            record = dict(read.records.get(model, {}))
            if record.get("pending", {}).get("generation") != generation:
                return
            del record["pending"]
            text = render_config(read.config, {**read.records, model: record})
            try:
                _write(read.snapshot.config_path, text, read.generation)
                return
            except PreconditionLost:
                continue


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
