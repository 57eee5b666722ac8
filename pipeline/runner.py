"""Run the pipeline once on the spans present, showing each component as it finishes.

``run_pipeline(config)`` runs the pipeline with ``LocalDagRunner`` (the ingest never answered from the
cache: it reads the data root). It reports each component as it finishes (name, seconds,
ran/cached/skipped) and returns the ``RunResult`` that ``pipeline.outcome`` reads back from MLMD: the
version pushed or why nothing was. TFX's own detailed log, and everything TensorFlow prints, goes to
``<pipeline_root>/logs/``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from components.load_check.early import early_server
from pipeline import data, nodes
from pipeline.config import PipelineConfig
from pipeline.outcome import ComponentRun, RunResult, last_execution_id, read_outcome
from pipeline.preflight import check_config
from tfx_canary.logs import fd2_to

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class _ProgressHandler(logging.Handler):
    """Turns TFX's "Component X is running/finished" log lines into timed progress lines."""

    _RUNNING = re.compile(r"^Component (\S+) is running\.$")
    _FINISHED = re.compile(r"^Component (\S+) is finished\.$")

    def __init__(self, progress: Progress, on_running: dict[str, Callable[[], None]]):
        super().__init__(logging.INFO)
        self.progress = progress
        self.on_running = on_running
        self.runs: list[ComponentRun] = []
        self._started = 0.0
        self._status = "ran"

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if running := self._RUNNING.match(message):
            self._started, self._status = time.monotonic(), "ran"
            if hook := self.on_running.get(running.group(1)):
                hook()
        elif message.startswith("A cached execution"):
            self._status = "cached"
        elif message.startswith("Skipping execution for"):
            self._status = "skipped"
        elif match := self._FINISHED.match(message):
            run = ComponentRun(match.group(1), time.monotonic() - self._started, self._status)
            self.runs.append(run)
            self.progress(f"  {run.name:<20} {run.seconds:6.1f} s  {run.status}")


@contextmanager
def _tfx_logs(
    log_file: Path, progress: Progress, on_running: dict[str, Callable[[], None]]
) -> Iterator[_ProgressHandler]:
    """Send the full TFX/Beam/TF log to ``log_file`` and only progress lines to ``progress``.

    Console handlers are quietened to errors for the duration unless debug logging is on (-v), and
    what TensorFlow and Beam print to file descriptor 2 lands in ``log_file`` too.
    """
    root, absl_logger = logging.getLogger(), logging.getLogger("absl")
    verbose = root.isEnabledFor(logging.DEBUG)
    saved_levels = {h: h.level for h in root.handlers}
    saved_root, saved_absl = root.level, absl_logger.level
    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler = _ProgressHandler(progress, on_running)
    if not verbose:
        for console in root.handlers:
            console.setLevel(logging.ERROR)
        root.setLevel(logging.INFO)
    absl_logger.setLevel(logging.INFO)
    # Something inside Transform's run sets the absl logger to WARNING, which silenced every later
    # "Component X is finished" line (measured): hold the level at INFO until the run ends.
    absl_logger.setLevel = lambda level: None  # type: ignore[method-assign]
    root.addHandler(to_file)
    absl_logger.addHandler(handler)
    try:
        with fd2_to(str(log_file)) if not verbose else contextlib.nullcontext():
            yield handler
    finally:
        del absl_logger.setLevel  # the class method again
        absl_logger.removeHandler(handler)
        root.removeHandler(to_file)
        to_file.close()
        for console, level in saved_levels.items():
            console.setLevel(level)
        root.setLevel(saved_root)
        absl_logger.setLevel(saved_absl)


def run_pipeline(config: PipelineConfig, progress: Progress | None = None) -> RunResult:
    """Run once on the spans present; never raises for a failed component (see ``RunResult.ok``).

    A config that does not fit its code, schema or data raises ``ConfigError`` before any component
    runs (``pipeline.preflight``).
    """
    say = progress or log.info
    started = time.monotonic()
    result = RunResult(pipeline=config.name, model=config.model)
    data_root = config.paths.data_root
    spans = data.present_spans(Path(data_root))
    if not spans:
        result.ok = False
        result.reason = f"no data spans under {data_root}: run `tfx-canary data init` first"
        return result
    window = spans[-config.span_window :]
    # Bad config, code or data fails here, in one line, before anything is written.
    check_config(config, [f for span in window for f in data.span_files(data_root, span)])
    empty = data.empty_files(Path(data_root), spans[-1])
    if empty:
        result.spans, result.refused = [spans[-1]], True
        result.anomalies = [f"{name} is empty: no header, no rows" for name in empty]
        result.reason = f"span {spans[-1]} has data anomalies, so nothing was trained: " + "; ".join(
            result.anomalies
        )
        return result
    finish_pending_release(config, say)

    from pipeline.pipeline import create_pipeline
    from tfx_canary import beam_views

    beam_views.install()  # the components' Beam pipelines build faster

    log_file = Path(config.pipeline_root) / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    result.log_file = str(log_file)
    before = last_execution_id(config)
    with (
        early_server() as start_load_check_server,
        _tfx_logs(
            # the load check's server starts with Transform: its start-up overlaps Transform and Trainer
            log_file,
            say,
            on_running={nodes.TRANSFORM: start_load_check_server},
        ) as handler,
    ):
        try:
            say(
                f"Running {config.name} ({config.model}) on span {spans[-1]}, window of {len(window)} span(s)"
            )
            run_local(create_pipeline(config))
        except Exception as error:  # a component failed: say which and why, keep the details in the log
            if interrupted(error):
                raise KeyboardInterrupt from error  # Ctrl-C or SIGTERM, which Beam wraps in its own error
            failed = handler.runs[-1].name if handler.runs else "the pipeline"
            result.ok = False
            result.reason = f"{_running_component(log_file) or failed} failed: {error}"
        result.components = handler.runs
    read_outcome(config, before, result)
    result.seconds = time.monotonic() - started
    return result


def run_local(pipeline) -> None:
    """``LocalDagRunner`` on the compiled pipeline, with the cache off for the components that read the
    data root (``pipeline.pipeline.never_cached``)."""
    from tfx.dsl.compiler import compiler
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # not tfx.v1: see pipeline.py

    from pipeline.pipeline import never_cached

    ir = compiler.Compiler().compile(pipeline)
    uncached = set(never_cached(pipeline))
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in uncached:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    LocalDagRunner().run_with_ir(ir)


def finish_pending_release(config: PipelineConfig, say: Progress) -> None:
    """A version an earlier run listed but never labelled (killed between phase 1 and phase 2) is
    labelled now if the model server has loaded it, or unlisted again if it failed to load."""
    if not config.server_address:
        return  # no server from here (Vertex): the controller finishes it where the server runs
    from release import audit, operations
    from release import state as sm
    from release.metadata import open_store
    from release.server_client import ServerClient, ServerUnreachable, VersionLoadFailed, WaitTimedOut

    auditor = audit.Audit(open_store(config.metadata_path), config.paths.releases_dir, "pipeline")
    target = operations.Target(
        config.paths.serving_root,
        config.serving_model_name,
        server=ServerClient(config.server_address),
        audit=auditor,
        load_timeout_s=120.0,
    )
    version = target.read().state.candidate
    if version is None:
        return
    say(f"Version {version} was listed by an earlier run but never labelled: finishing its release first")
    try:
        update = operations.finish_phase2(target, version, "phase 2 finished by the next pipeline run")
        say(f"  version {version} is now `{'stable' if update.after.state.stable == version else 'canary'}`")
    except VersionLoadFailed as error:
        operations.commit(target, lambda s: sm.withdraw(s, version), "phase1-undone", str(error))
        say(f"  version {version} failed to load, so it was unlisted again: {error}")
    except (ServerUnreachable, WaitTimedOut) as error:
        say(f"  not now ({error}); the version stays listed for the next run to finish")


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` was caused by a KeyboardInterrupt: Beam re-raises one inside a transform as a
    ``RuntimeError("KeyboardInterrupt [while running ...]")`` chained to it."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _running_component(log_file: Path) -> str | None:
    running = re.findall(r"Component (\S+) is running\.", log_file.read_text()) if log_file.exists() else []
    return running[-1] if running else None
