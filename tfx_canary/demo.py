"""``tfx-canary demo``: the whole canary loop on this machine, saying what happens and why.

1. prepare the first quarterly taxi spans; 2. start the model server (``tfx-canary serve`` in a
subprocess on 127.0.0.1) and the router; 3. run the pipeline: the first blessed version becomes
``stable``; 4. add the next span and run again: the new version becomes ``canary``; 5. shift traffic
through the rollout steps under a bounded synthetic load made of the spans' rows, and let the
controller promote or roll back (shown live); 6. print ``status`` and ``history``; the servers always
stop; 7. write the release report (``tfx-canary report``) and end by saying where it is.

It only orchestrates the project's own functions. Re-running on the same home continues the story:
it adds the next span and releases it (or finishes a canary an interrupted run left on trial).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from models.catalog import DEFAULT_MODEL
from tfx_canary.errors import CanaryError, UsageError
from tfx_canary.options import add_home, add_model_choice, home_of
from tfx_canary.process import stop
from tfx_canary.signals import STOP_SIGNALS

DEFAULT_PLAN = "shadow=5s,25%=5s,100%=5s"
_MEANING = {
    "promoted": "The old version stays loaded as `previous` for an hour: "
    "`tfx-canary rollback` brings it back instantly.",
    "rolled back": "The canary was worse than stable, so it was unloaded; clients stay on stable.",
    "inconclusive": "Too little traffic to judge, so the canary holds its step; "
    "`tfx-canary rollout` continues it.",
    "interrupted": "The rollout was stopped; the step in force stays and `tfx-canary rollout` resumes it.",
}
_REST_LINE = re.compile(r"Exporting HTTP/REST API at:([\w.\-]+):(\d+)")
_GRPC_LINE = re.compile(r"Running gRPC ModelServer at ([\w.\-]+):(\d+)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole loop: data, model server, router, train, canary, rollout, history"
    )
    add_home(p)
    add_model_choice(p, default=DEFAULT_MODEL)
    p.add_argument(
        "--spans", type=int, default=3, help="spans for a new home: N-1 train the first version (default 3)"
    )
    p.add_argument("--rows-per-span", type=int, default=300, help="rows kept per span (default 300)")
    p.add_argument("--train-steps", type=int, default=200, help="training steps per run (default 200)")
    p.add_argument(
        "--plan", default=DEFAULT_PLAN, help="rollout steps (default " + DEFAULT_PLAN.replace("%", "%%") + ")"
    )
    p.add_argument("--rps", type=float, default=30.0, help="synthetic requests per second (default 30)")
    p.set_defaults(func=demo)


def say(text: str = "") -> None:
    """Print one line of the demo; first stop if a stop was asked for (``_stop_on_signals``)."""
    if _STOP.is_set():
        raise KeyboardInterrupt
    print(text, flush=True)


# Set by SIGTERM or Ctrl-C while the demo runs. The KeyboardInterrupt the handler raises is lost when
# Python happens to be running a weakref callback or a __del__ (it prints "Exception ignored in ..." and
# goes on: seen during a pipeline run), so ``say`` raises it again at the demo's next line.
_STOP = threading.Event()


class ServerStartError(CanaryError, RuntimeError):
    """The model server subprocess exited or did not start listening in time."""


class ModelServerProcess:
    """``tfx-canary serve`` in a subprocess, bound to 127.0.0.1 on OS-chosen ports, its output in a log.

    Labels in an existing config are accepted at start-up (TF Serving would refuse to start on a
    config whose labels point at versions not loaded yet). ``stop()`` sends SIGTERM (the server
    drains in-flight requests) and kills it if it does not exit.
    """

    def __init__(
        self, config_file: Path, log_file: Path, poll_seconds: int = 1, start_timeout_s: float = 120
    ):
        self.config_file, self.log_file = Path(config_file), Path(log_file)
        self.poll_seconds, self.start_timeout_s = poll_seconds, start_timeout_s
        self.process: subprocess.Popen | None = None
        self.address = ""  # REST host:port
        self.grpc_address = ""

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "tfx_canary.cli", "serve",
            "--host=127.0.0.1", "--port=-1", "--rest_api_port=-1",
            f"--model_config_file={self.config_file}",
            f"--model_config_file_poll_wait_seconds={self.poll_seconds}",
            f"--file_system_poll_wait_seconds={self.poll_seconds}",
            "--allow_version_labels_for_unavailable_models=true",
            "--drain_seconds=5",
        ]  # fmt: skip

    def start(self) -> ModelServerProcess:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_ENABLE_FORK_SUPPORT": "false"}
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            with open(self.log_file, "rb") as log:
                log.seek(offset)
                written = log.read().decode(errors="replace")
            match, grpc = _REST_LINE.search(written), _GRPC_LINE.search(written)
            if match and grpc:
                self.address, self.grpc_address = f"{match[1]}:{match[2]}", f"{grpc[1]}:{grpc[2]}"
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self.process.poll() is not None else "did not start in time"
                self.stop()
                raise ServerStartError(f"the model server {why}; see {self.log_file}:\n{self._tail(offset)}")
            time.sleep(0.2)

    def _tail(self, offset: int, lines: int = 15) -> str:
        with open(self.log_file, "rb") as log:
            log.seek(offset)
            return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def __enter__(self) -> ModelServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C does, so the cleanup below always runs; both are also kept in
    ``_STOP`` in case the KeyboardInterrupt is lost."""

    def interrupt(signum, frame):
        _STOP.set()
        raise KeyboardInterrupt

    _STOP.clear()
    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _STOP.clear()


def _relaxed(gate: dict) -> dict:
    """A metric gate that allows a candidate up to 0.05 worse than the baseline."""
    return {**gate, "max_drop": 0.05} if gate.get("max_drop") is not None else gate


def demo(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # before gRPC loads (Beam's workers)
    from pipeline.config import load_config
    from rollout.controller import parse_plan

    if args.spans < 2 or args.rows_per_span < 50 or args.train_steps < 1 or args.rps <= 0:
        raise UsageError(
            "--spans must be at least 2, --rows-per-span at least 50, --train-steps and --rps positive"
        )
    config = load_config(
        model=args.model,
        home=home_of(args).root,
        train_steps=args.train_steps,
        eval_steps=5,
        warmup_examples=2,
    )
    # Tiny spans: leave room for noise between two retrains.
    config = config.replace(metrics=[_relaxed(gate) for gate in config.to_dict()["metrics"]])
    plan = parse_plan(args.plan)
    started = time.monotonic()
    try:
        with _stop_on_signals():
            code = _loop(config, args, plan)
    except KeyboardInterrupt:
        say("\nInterrupted: the model server and the router were stopped; the home keeps its state.")
        return 130
    report = _report(config.paths, config.serving_model_name)
    say(f"\nDemo finished in {time.monotonic() - started:.0f} s. Everything lives under {config.paths.root}.")
    if report:
        say(f"Release report: {report}")
    return code


def _loop(config, args: argparse.Namespace, plan) -> int:
    """Data, then the servers; the release steps run while they are up, and they always stop."""
    from pipeline import data
    from release import audit
    from release.metadata import open_store
    from release.operations import Target
    from release.server_client import ServerClient
    from release.serving_dir import CONFIG_NAME, write_text_atomic
    from rollout.router import Router

    paths = config.paths

    say(f"tfx-canary demo: model {config.serving_model_name}, project home {config.paths.root}")
    say("\n== 1. Data: quarterly spans of the Chicago taxi sample (a new folder = new data arriving)")
    present = data.present_spans(paths.data_root)
    if present:
        say(f"   spans {present} already present under {paths.data_root}: continuing from there")
    else:
        written = data.init_spans(paths.data_root, spans=args.spans - 1, rows_per_span=args.rows_per_span)
        say(f"   wrote spans {written} (at most {args.rows_per_span} rows each) under {paths.data_root}")

    config_file = Path(paths.serving_root) / CONFIG_NAME
    if not config_file.exists():
        write_text_atomic(str(config_file), "model_config_list {}\n")
    say("\n== 2. Serving: the model server watches models.config; the router splits stable/canary traffic")
    server_log = Path(paths.log_file("model_server"))
    with (
        ModelServerProcess(config_file, server_log) as server,
        Router(server.address, paths.serving_root, grpc_upstream=server.grpc_address) as router,
    ):
        say(f"   model server (tfx-canary serve) at http://{server.address}, log in {server_log}")
        say(f"   it re-reads {config_file} every second")
        say(f"   router at http://127.0.0.1:{router.port}/v1/models/{config.serving_model_name}:predict")
        say(f"   and gRPC at 127.0.0.1:{router.grpc_port} (PredictionService, the model's name only)")
        config = config.replace(server_address=server.address)
        target = Target(
            paths.serving_root,
            config.serving_model_name,
            server=ServerClient(server.address),
            audit=audit.Audit(open_store(paths.metadata_path), paths.releases_dir, "controller:demo"),
        )
        code = _release(config, target, router, args, plan)
        _finish(paths.root, target.model, server.address)
        return code


def _release(config, target, router, args: argparse.Namespace, plan) -> int:
    """Steps 3-5: first version to `stable`, next span to `canary`, then the rollout."""
    from pipeline import data
    from release import operations

    state = target.read().state
    if state.candidate is not None:  # an interrupted run pushed a version but did not label it
        say(f"\n== Finishing the release of version {state.candidate}, pushed by an interrupted run")
        operations.finish_phase2(target, state.candidate, "phase 2 finished by the demo")
        state = target.read().state
    if state.stable is None:
        say("\n== 3. First release: train, check the gates, push; the first version becomes `stable`")
        if not _train(config).ok or target.read().state.stable is None:
            return 1
        say(f"   version {target.read().state.stable} is `stable`: every client request goes to it")
    else:
        say(f"\n== 3. First release: done before, `stable` is version {state.stable}")
    if target.read().state.in_flight is None:
        say("\n== 4. New data: the next span arrives and the pipeline retrains on the window")
        span = data.add_span(config.paths.data_root, rows_per_span=args.rows_per_span)
        if span is None:
            say("   all 16 spans are in already: nothing new to train on")
            return 0
        say(f"   span {span} added; the new version, if blessed, is pushed and labelled `canary`")
        result = _train(config)
        if not result.ok:
            return 1
        if target.read().state.in_flight is None:
            return 0
        say(f"   version {target.read().state.in_flight} is `canary`: loaded, no client traffic yet")
    else:
        say(f"\n== 4. New data: skipped, version {target.read().state.in_flight} is already on trial")
    _rollout(target, router, config, args, plan)
    return 0


def _train(config):
    """Run the pipeline once and say what came out (a ``RunResult``)."""
    from pipeline.outcome import summary
    from pipeline.runner import run_pipeline

    result = run_pipeline(config, progress=lambda line: say(f"   {line}"))
    say("   " + summary(result).replace("\n", "\n   "))
    if not result.ok:
        say("   the run failed; nothing was released (details in the TFX log above)")
    elif result.pushed_version is None:
        say("   nothing new to release, so the serving state stays as it is")
    return result


def _rollout(target, router, config, args: argparse.Namespace, plan) -> None:
    from fixtures.taxi import serving_raw_bodies, serving_raw_predict_requests
    from release.serving_dir import METRICS_PATH
    from rollout.analysis import Criteria
    from rollout.controller import RolloutController
    from rollout.load import SteadyLoad
    from rollout.view import run_with_view
    from tfx_canary.live import LiveOutput

    steps = ", ".join(step.name for step in plan)
    say(
        f"\n== 5. Rollout: {args.rps:.0f} requests/s of real trips through the router (REST and gRPC); "
        f"steps {steps}"
    )
    say("   each step the controller compares canary with stable (errors, p99 latency, predictions)")
    say("   and moves on, promotes at the end, or rolls back at the first failing step")
    bodies = serving_raw_bodies(config.paths.data_root, config.model)
    requests = serving_raw_predict_requests(config.paths.data_root, config.model)
    longest = sum(step.duration_s for step in plan) * 5 + 120  # the controller may extend each window
    criteria = Criteria(
        min_requests=max(10, int(args.rps * min(s.duration_s for s in plan) / 8)), p99_slack_s=0.05
    )
    controller = RolloutController(target, f"http://127.0.0.1:{router.port}{METRICS_PATH}", plan, criteria)
    output = LiveOutput(every_s=5.0)  # redrawn in place on a terminal, a line now and then in a log
    with SteadyLoad(
        router.port,
        target.model,
        threads=1,
        rate=args.rps / 2,
        max_seconds=longest,
        bodies=bodies,
        grpc_port=router.grpc_port,
        grpc_threads=1,
        grpc_requests=requests,
    ) as load:
        outcome = run_with_view(controller, config.paths.releases_dir, output)
        load.stop()
    for step in outcome.steps:
        reasons = "; ".join(step["reasons"]) or "within criteria"
        sides = {side: step.get(side, {}).get("requests", 0) for side in ("stable", "canary")}
        counts = f"stable {sides['stable']:.0f} req, canary {sides['canary']:.0f} req"
        say(f"   step {step['step']['name']:<8} {step['verdict']:<12} ({counts}) {reasons}")
    state = target.read().state
    say(f"   verdict: {outcome.verdict}; `stable` is version {state.stable}. " + _MEANING[outcome.verdict])
    failed = len(load.failures)
    per_protocol = ", ".join(
        f"{name.upper() if name == 'rest' else 'gRPC'} {sum(counts.values())} sent, {counts['failed']} failed"
        for name, counts in load.protocols.items()
    )
    say(f"   clients sent {load.total} requests, {failed} failed ({per_protocol})")
    if failed:
        say(f"   first failures: {load.failures[:3]}")


def _report(paths, model: str) -> str:
    """Step 7: the release report pages (``tfx-canary report``); the newest release's page, if any."""
    from observe.report import ReportError, write_reports
    from release.metadata import open_store

    if not os.path.exists(paths.metadata_path):
        return ""
    say("\n== 7. Release report (tfx-canary report): one page per release, plots from the saved analyses")
    try:
        out = os.path.join(paths.root, "reports")
        pages, index = write_reports(open_store(paths.metadata_path), paths.releases_dir, model, out)
    except ReportError as error:  # e.g. nothing released yet: the demo still ends normally
        say(f"   no report: {error}")
        return ""
    say(f"   all releases of {model}: file://{index}")
    return f"file://{pages[-1]}"


def _finish(home: str, model: str, server_address: str) -> None:
    from tfx_canary import cli

    common = ["--home", str(home), "--model", model]
    say("\n== 6. Status (tfx-canary status) and release history (tfx-canary history)")
    cli.main(["status", *common, "--server", server_address])
    say("")
    cli.main(["history", *common])
