"""Which model versions are loaded, and which one answers a request (TF Serving's ServerCore).

- Versions are the integer-named children of each ``base_path``, chosen by the model's version policy
  (``latest {N}``, ``all``, ``specific``), rescanned every ``file_system_poll_wait_seconds``.
- The manager thread decides, availability-preserving: the highest new version is loaded first, and an
  old version is unloaded only once an aspired one is AVAILABLE. Loads run on ``num_load_threads`` load
  threads (at least one), never on the manager thread, and the wait between retries holds no thread:
  one failing version never holds up another model's or version's load, nor the status.
- A load is retried ``max_num_load_retries`` times, ``load_retry_interval_micros`` apart; the retries
  stop as soon as the version leaves the aspired set (TF Serving's ``CancelLoadServableRetry``). A version
  that still fails shows END with its error and is not retried while it stays aspired.
- ``reload`` replaces the whole config. Labels are checked against AVAILABLE versions *before* anything
  in the new config is applied; one bad label rejects the reload as a whole.
- A request without version or label goes to the highest loaded version.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServingError, failed_precondition, invalid_argument, not_found, status_code_of
from serving.monitoring import LOAD_ATTEMPT_COUNT, LOAD_LATENCY, VERSION_STATE, ServingMetrics
from serving.paths import version_of
from serving.servable import Servable

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class VersionStatus:
    state: int = State.START
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclass
class _LoadJob:
    """One version waiting for, or in, a load attempt on a load thread."""

    name: str
    version: int
    path: str
    attempts: int = 0
    ready_at: float = 0.0  # time.monotonic() of the next attempt
    running: bool = False
    cancelled: bool = False  # the version left the aspired set: no more attempts
    error: tuple[grpc.StatusCode, str] | None = None  # the last attempt's failure


@dataclass(frozen=True)
class Resolved:
    """The servable a request resolved to, and the label it asked for ("" when none)."""

    servable: Servable
    label: str


def discover_versions(model: model_server_config_pb2.ModelConfig) -> dict[int, str]:
    """The versions the model's policy wants, as {version: directory}, from the integer-named children."""
    import tensorflow as tf

    base = model.base_path
    if not tf.io.gfile.exists(base):
        raise not_found(f"Could not find base path {base} for servable {model.name}")
    found: dict[int, str] = {}
    for child in tf.io.gfile.listdir(base):
        version = version_of(child)
        if version is not None:
            found[version] = os.path.join(base, str(version))
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        chosen = found
    elif choice == "specific":
        wanted = set(policy.specific.versions)
        for missing in sorted(wanted - set(found)):
            log.warning("Version %d of servable %s is not under base path %s", missing, model.name, base)
        chosen = {v: p for v, p in found.items() if v in wanted}
    else:
        keep = max(policy.latest.num_versions, 1)
        chosen = {v: found[v] for v in sorted(found, reverse=True)[:keep]}
    if not found:
        log.warning(
            "No versions of servable %s found under base path %s. Did you forget to name your leaf "
            "directory as a number (eg. '/1/')?",
            model.name,
            base,
        )
    return chosen


def validate_config(
    new: model_server_config_pb2.ModelServerConfig,
    old: model_server_config_pb2.ModelServerConfig | None,
) -> None:
    """The structural checks ServerCore makes before touching anything."""
    if new.WhichOneof("config") != "model_config_list":
        raise invalid_argument("ServerCore: Only ModelConfigList is currently supported")
    old_platforms = {m.name: m.model_platform for m in old.model_config_list.config} if old else {}
    seen = set()
    for model in new.model_config_list.config:
        if not model.name:
            raise invalid_argument("Model config has an empty name")
        if model.name in seen:
            raise invalid_argument(f"Illegal to list model {model.name} multiple times in config list")
        seen.add(model.name)
        if not (os.path.isabs(model.base_path) or _URI.match(model.base_path)):
            raise invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )
        if model.model_type and model.model_platform:
            raise invalid_argument("Illegal setting both model_type (deprecated) and model_platform.")
        platform = model.model_platform or ("tensorflow" if model.model_type == 1 else "")
        if not platform:
            raise invalid_argument("Illegal setting neither model_type nor model_platform.")
        if platform != "tensorflow":
            raise invalid_argument(f"Model {model.name} requests unsupported platform {platform}")
        previous = old_platforms.get(model.name)
        if previous and previous != platform:
            raise invalid_argument(
                f"Illegal to change a model's platform. For model {model.name} platform was {previous} "
                f"and new platform requested is {platform}"
            )


class ModelManager:
    """Owns the config, the label map, every version's state, and the loaded servables."""

    def __init__(
        self,
        *,
        file_system_poll_wait_seconds: float = 1,
        allow_version_labels_for_unavailable_models: bool = False,
        max_num_load_retries: int = 5,
        load_retry_interval_micros: int = 60_000_000,
        num_load_threads: int = 0,
        saved_model_tags: tuple[str, ...] = ("serve",),
        session_config=None,
        method_name_check: bool = False,
        metrics: ServingMetrics | None = None,
        warmup: Callable[[Servable], None] | None = None,
    ) -> None:
        self._poll_seconds = file_system_poll_wait_seconds
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._load_attempts = 1 + max_num_load_retries
        self._retry_seconds = max(load_retry_interval_micros, 0) / 1e6  # negative: no wait (TF Serving)
        self._tags = saved_model_tags
        self._session_config = session_config
        self._method_name_check = method_name_check
        self._metrics = metrics or ServingMetrics()
        self._warmup = warmup
        self._cond = threading.Condition()
        self._config: model_server_config_pb2.ModelServerConfig | None = None
        self._labels: dict[str, dict[str, int]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._serving: dict[str, dict[int, Servable]] = {}  # replaced, never mutated: read without a lock
        self._failed: dict[str, set[int]] = {}  # failed versions still aspired: not retried
        self._jobs: dict[tuple[str, int], _LoadJob] = {}  # loads waiting or running
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._config_generation = 0  # bumped by every applied reload
        self._polled_generation = 0  # the config generation the last finished poll worked from
        self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
        self._thread.start()
        # TF Serving's 0 means "serially, in the manager's loop"; here that is one load thread of its own.
        self._loaders = [
            threading.Thread(target=self._load_worker, name=f"model-load-{i}", daemon=True)
            for i in range(max(1, num_load_threads))
        ]
        for loader in self._loaders:
            loader.start()

    # ---- config -------------------------------------------------------------------------------------

    def reload(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        wait_seconds: float | None = None,
        initial: bool = False,
    ) -> None:
        """Apply ``config`` as the whole new config, or raise and change nothing.

        Returns once every newly added model has an AVAILABLE version, or every one of its versions has
        ended. A new model that ended without one raises UNKNOWN with TF Serving's message ("servable(s)"
        at start-up, "model(s)" on a later reload); the config stays applied. A model with no version at
        all does not hold the reload up (TF Serving would wait for one forever).
        """
        with self._cond:
            validate_config(config, self._config)
            new_labels = {m.name: dict(m.version_labels) for m in config.model_config_list.config}
            self._check_labels(new_labels)
            old_names = set(self._model_configs())
            self._config = config
            self._labels = new_labels
            for model in config.model_config_list.config:
                self._failed.setdefault(model.name, set())
            self._config_generation += 1
            generation = self._config_generation
            new_names = set(self._model_configs()) - old_names
        self._wake.set()
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        with self._cond:
            while not self._stop.is_set():
                settled = self._polled_generation >= generation and all(
                    self._serving.get(n) or not self._loading(n) for n in new_names
                )
                if settled:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else 1.0)
            failures = []  # per model that ended without a version: its first failed version
            for name in sorted(new_names):
                ended = [
                    (version, status)
                    for version, status in sorted(self._status.get(name, {}).items())
                    if status.state == State.END and status.error_code != grpc.StatusCode.OK
                ]
                if not self._serving.get(name) and ended:
                    failures.append((name, *ended[0]))
        if failures:
            listed = "".join(
                f"{{{{name: {name} version: {version}}} due to error: "
                f"{status.error_code.name}: {status.error_message}}}, "
                for name, version, status in failures
            )
            what = "servable(s)" if initial else "model(s)"
            raise ServingError(
                grpc.StatusCode.UNKNOWN, f"{len(failures)} {what} did not become available: {{{listed}}}"
            )

    def _check_labels(self, new_labels: dict[str, dict[str, int]]) -> None:
        for name, labels in new_labels.items():
            available = self._serving.get(name, {})
            current = self._labels.get(name, {})
            for label, version in labels.items():
                if version in available:
                    continue
                is_new_label = label not in current or current[label] == version
                if self._allow_unavailable_labels and is_new_label:
                    continue
                raise failed_precondition(
                    f"Request to assign label to version {version} of model {name}, which is not currently "
                    "available for inference"
                )

    def _model_configs(self) -> dict[str, model_server_config_pb2.ModelConfig]:
        if self._config is None:
            return {}
        return {m.name: m for m in self._config.model_config_list.config}

    def config(self) -> model_server_config_pb2.ModelServerConfig | None:
        with self._cond:
            return self._config

    # ---- requests -----------------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Resolved:
        """Map a model spec to a loaded servable with TF Serving's errors."""
        versions = self._serving.get(name, {})
        if label:
            if self._config is None:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "Model labels does not init yet.")
            labelled = self._labels.get(name, {}).get(label)
            if labelled is None:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = labelled
        if version is not None:
            servable = versions.get(version)
            if servable is None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return Resolved(servable, label or "")
        if not versions:
            raise not_found(f"Servable not found for request: Latest({name})")
        return Resolved(versions[max(versions)], "")

    def status(self, name: str, version: int | None = None) -> get_model_status_pb2.GetModelStatusResponse:
        """Every version ever seen for ``name`` (or just ``version``), as GetModelStatus answers."""
        with self._cond:
            seen = {
                v: VersionStatus(s.state, s.error_code, s.error_message)
                for v, s in self._status.get(name, {}).items()
            }
        if version is not None:
            if version not in seen:
                raise not_found(f"Could not find version {version} of model {name}")
            seen = {version: seen[version]}
        if not seen:
            raise not_found(f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(seen, reverse=True):
            entry = response.model_version_status.add(version=number, state=seen[number].state)
            entry.status.error_code = seen[number].error_code.value[0]
            entry.status.error_message = seen[number].error_message
        return response

    def is_configured(self, name: str) -> bool:
        """Whether the current config names this model (cheap: asked on every request)."""
        return name in self._labels  # replaced at each reload, keyed by every configured model

    def labels(self, name: str) -> dict[str, int]:
        return dict(self._labels.get(name, {}))

    # ---- the manager thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                generation = self._config_generation
            try:
                self._poll_once()
            except Exception:  # keep serving whatever is loaded; the next poll tries again
                log.exception("Model manager poll failed")
            with self._cond:
                self._polled_generation = generation
                self._cond.notify_all()
            timeout = self._poll_seconds if self._poll_seconds > 0 else None
            self._wake.wait(timeout)
            self._wake.clear()

    def _poll_once(self) -> None:
        with self._cond:
            models = self._model_configs()
            known = set(self._status) | set(self._serving)
        aspired: dict[str, dict[int, str]] = {name: {} for name in known - set(models)}
        for name, model in models.items():
            try:
                aspired[name] = discover_versions(model)
            except Exception as error:
                log.error("FileSystemStoragePathSource encountered a filesystem access error: %s", error)
        for name, wanted in aspired.items():
            if self._stop.is_set():
                return
            self._reconcile(name, wanted)

    def _loading(self, name: str) -> bool:
        return any(s.state in (State.START, State.LOADING) for s in self._status.get(name, {}).values())

    def _reconcile(self, name: str, wanted: dict[int, str]) -> None:
        """Queue loads of new aspired versions, cancel those no longer aspired, unload the old ones."""
        with self._cond:
            failed = self._failed.setdefault(name, set())
            failed &= set(wanted)  # a version that leaves the aspired set may be retried if it comes back
            for key, job in list(self._jobs.items()):
                if key[0] == name and key[1] not in wanted and not job.cancelled:
                    self._cancel(job)
            queued = {version for (model, version) in self._jobs if model == name}
            loaded = set(self._serving.get(name, {}))
            for version in sorted(set(wanted) - loaded - failed - queued, reverse=True):
                self._status.setdefault(name, {})[version] = VersionStatus(State.START)
                self._jobs[name, version] = _LoadJob(name, version, wanted[version])
            self._cond.notify_all()
            serving = dict(self._serving.get(name, {}))
            unaspired = sorted(set(serving) - set(wanted))
            if not unaspired:
                return
            if not any(v in serving for v in wanted) and wanted:
                unaspired = unaspired[:-1]  # keep the newest old version until an aspired one is up
            for version in unaspired:
                self._set_state(name, version, State.UNLOADING)
                del serving[version]
            self._publish(name, serving)
            for version in unaspired:
                self._set_state(name, version, State.END)
                log.info("Unloaded servable version {name: %s version: %d}", name, version)

    def _cancel(self, job: _LoadJob) -> None:
        """Stop retrying a version that is no longer aspired; it ends now unless an attempt is running."""
        job.cancelled = True
        log.info("Cancelling load retries of servable version {name: %s version: %d}", job.name, job.version)
        if not job.running:
            del self._jobs[job.name, job.version]
            code, message = job.error or (grpc.StatusCode.OK, "")
            self._set_state(job.name, job.version, State.END, code, message)

    def _next_job(self) -> _LoadJob | None:
        """The next load to attempt (highest version first), waiting until one is due; None at stop."""
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                idle = [job for job in self._jobs.values() if not job.running]
                due = [job for job in idle if job.ready_at <= now]
                if due:
                    job = max(due, key=lambda j: (j.version, j.name))
                    job.running = True
                    return job
                wait = min((job.ready_at - now for job in idle), default=None)
                self._cond.wait(wait)
            return None

    def _load_worker(self) -> None:
        while (job := self._next_job()) is not None:
            self._attempt(job)

    def _attempt(self, job: _LoadJob) -> None:
        name, version, path = job.name, job.version, job.path
        self._set_state(name, version, State.LOADING)
        started = time.perf_counter()
        try:
            servable = Servable(
                name, version, path, self._tags, self._session_config, self._method_name_check
            )
            if self._warmup is not None:
                self._warmup(servable)
        except Exception as error:
            self._metrics.add(LOAD_ATTEMPT_COUNT, (path, "fail"))
            self._failed_attempt(job, error)
            return
        self._metrics.add(LOAD_ATTEMPT_COUNT, (path, "success"))
        self._metrics.add(LOAD_LATENCY, (path,), (time.perf_counter() - started) * 1e6)
        with self._cond:
            del self._jobs[name, version]
            if job.cancelled:  # loaded after all, but no longer wanted
                self._set_state(name, version, State.END)
                return
            serving = dict(self._serving.get(name, {}))
            serving[version] = servable
            self._publish(name, serving)
            self._set_state(name, version, State.AVAILABLE)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        self._wake.set()  # the manager may now unload what this version replaces

    def _failed_attempt(self, job: _LoadJob, error: Exception) -> None:
        message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
        job.attempts += 1
        log.warning(
            "Loading servable {name: %s version: %d} failed (attempt %d of %d): %s",
            job.name,
            job.version,
            job.attempts,
            self._load_attempts,
            message.strip(),
        )
        with self._cond:
            job.running = False
            job.error = (status_code_of(error), message.strip())
            if job.cancelled or job.attempts >= self._load_attempts:
                del self._jobs[job.name, job.version]
                if not job.cancelled:
                    self._failed.setdefault(job.name, set()).add(job.version)
                self._set_state(job.name, job.version, State.END, *job.error)
            else:
                job.ready_at = time.monotonic() + self._retry_seconds
            self._cond.notify_all()

    def _publish(self, name: str, serving: dict[int, Servable]) -> None:
        self._serving = {**self._serving, name: serving}

    def _set_state(
        self,
        name: str,
        version: int,
        state: int,
        code: grpc.StatusCode = grpc.StatusCode.OK,
        message: str = "",
    ) -> None:
        with self._cond:
            self._status.setdefault(name, {})[version] = VersionStatus(state, code, message)
            self._cond.notify_all()
        self._metrics.set(VERSION_STATE, (name, str(version)), 1.0 if state == State.AVAILABLE else 0.0)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked on every state change) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=60)
        for loader in self._loaders:
            loader.join(timeout=60)
