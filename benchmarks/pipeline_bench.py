"""Time the tfx-canary pipeline against TFX's own taxi example, side by side, on this machine.

Cases (each run in a fresh subprocess, fresh home, median wall time and peak RSS of ``--repeats``):

- ``ours``: first run on all 16 spans (15,002 rows, ``span_window=16``), FnApiRunner in_memory: one
  pipeline run that ingests and validates every span (WindowIngest, one Beam pass) and trains;
- ``ours-mp``: the same with Beam's ``multi_processing`` mode (the Beam-settings measurement);
- ``retrain``: one more span arrives after a first run on spans 1-15: time of that second run, which
  reuses the first model's transform graph (Transform applies it, no re-analysis) and starts from its
  weights (warm start);
- ``retrain-cold``: the same retrain with warm start off (``warm_start_steps: 0``, so Transform
  re-analyzes the window and training starts from scratch, as a scheduled re-analysis does): the quality guard
  compares the two models on the same window and eval split (AUC for a classifier: the warm one no
  worse by more than 0.005; MAE for a regressor: no worse by more than 2%);
- ``tfx-example``: ``taxi_pipeline_native_keras`` from the installed tfx package on the same CSV,
  with in_memory Beam args (its best) and with its default ``multi_processing`` args.

Usage: ``.venv/bin/python benchmarks/pipeline_bench.py [--repeats 3] [--cases ours,retrain,...]
[--model taxi_tips|taxi_fare]``. Takes minutes per case; it prints a table at the end. Not a test:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IN_MEMORY = ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]
ALL_CASES = ("ours", "ours-mp", "retrain", "retrain-cold", "tfx-example", "tfx-example-mp")
# The quality guard: the metric of each task, which way is better, and how much worse a warm start may be.
GUARDS = {"auc": (True, lambda cold: 0.005), "mean_absolute_error": (False, lambda cold: 0.02 * cold)}


def _child_ours(
    model: str, home: Path, beam: list[str], spans: int, retrain: bool, warm: bool = True
) -> dict:
    """Run our pipeline; with ``retrain``, time only the run after adding the last span."""
    from tfx_canary.startup import use_keras_2

    use_keras_2()  # as the tfx-canary command does
    from pipeline import data
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    config = load_config(model=model, home=str(home), span_window=16, beam_args=tuple(beam))
    data.init_spans(config.paths.data_root, spans=spans - 1 if retrain else spans)
    if retrain:
        first = run_pipeline(config)
        print(f"  (untimed first run: {first.reason})", flush=True)
        data.add_span(config.paths.data_root)
        if not warm:
            config = config.replace(warm_start_steps=0)
    # The TFX example's module has imported tfx and TFMA before its clock starts: so has ours (a
    # retrain's first run imported them already). The user code is imported inside both clocks.
    import tensorflow_model_analysis  # noqa: F401
    from tfx import v1  # noqa: F401

    started = time.monotonic()
    result = run_pipeline(config)
    seconds = time.monotonic() - started
    print(f"  {result.reason}; {result.transform}; {result.training}", flush=True)
    components = {run.name: run.seconds for run in result.components}
    return {"seconds": seconds, "metrics": result.metrics, "components": components}


def _child_tfx_example(home: Path, beam: list[str]) -> dict:
    """TFX's own native-Keras taxi example on the same CSV, with LocalDagRunner."""
    import tfx
    from tfx import v1 as tfx_v1
    from tfx.examples.chicago_taxi_pipeline import taxi_pipeline_native_keras as example

    from pipeline import data

    data_root = home / "data"
    data_root.mkdir(parents=True)
    shutil.copy(data.sample_csv(), data_root / "data.csv")
    module_file = (
        Path(tfx.__file__).parent / "examples" / "chicago_taxi_pipeline" / "taxi_utils_native_keras.py"
    )
    pipeline = example._create_pipeline(
        pipeline_name="chicago_taxi_native_keras",
        pipeline_root=str(home / "root"),
        data_root=str(data_root),
        module_file=str(module_file),
        serving_model_dir=str(home / "serving"),
        metadata_path=str(home / "metadata.sqlite"),
        beam_pipeline_args=beam,
    )
    log = Path(tempfile.gettempdir()) / "pipeline_bench-tfx-example.log"
    print(f"  TFX's own output (pip installing its user-code wheels, Keras progress bars): {log}", flush=True)
    with fd_to(log, fd=1):
        started = time.monotonic()
        tfx_v1.orchestration.LocalDagRunner().run(pipeline)
        seconds = time.monotonic() - started
    return {"seconds": seconds, "metrics": {}, "components": {}}


@contextlib.contextmanager
def fd_to(path: Path, fd: int = 1):
    """Point file descriptor ``fd`` at ``path`` (appended) for the block, subprocesses included: the
    terminal keeps the benchmark's own lines. Unlike ``tfx_canary.logs.fd2_to``, ``sys.stdout`` follows
    the descriptor: Keras writes its progress bars through it."""
    sys.stdout.flush()
    saved = os.dup(fd)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, fd)
            os.close(saved)


def _measure(case: str, model: str) -> tuple[float, float, float, dict, dict]:
    """(seconds inside the run, whole-process seconds, peak RSS MiB, metrics, seconds per component) of
    one case in a subprocess."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-{case}-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_ENABLE_FORK_SUPPORT": "false"}
    result_file = home / "seconds"
    started = time.monotonic()
    process = subprocess.Popen(
        [
            *(sys.executable, __file__, "--child", case, "--model", model),
            *("--home", str(home), "--result", str(result_file)),
        ],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=sys.stdout,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"case {case} failed (exit status {status}); rerun with --child to see why")
    outcome = json.loads(result_file.read_text())
    shutil.rmtree(home, ignore_errors=True)
    return outcome["seconds"], wall, usage.ru_maxrss / 1024, outcome["metrics"], outcome["components"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(ALL_CASES))
    parser.add_argument("--model", default="taxi_tips", help="a shipped example: taxi_tips or taxi_fare")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        mp = ["--runner=FnApiRunner", *MULTI_PROCESSING]
        children = {
            "ours": lambda: _child_ours(args.model, args.home, IN_MEMORY, 16, retrain=False),
            "ours-mp": lambda: _child_ours(args.model, args.home, mp, 16, retrain=False),
            "retrain": lambda: _child_ours(args.model, args.home, IN_MEMORY, 16, retrain=True),
            "retrain-cold": lambda: _child_ours(
                args.model, args.home, IN_MEMORY, 16, retrain=True, warm=False
            ),
            "tfx-example": lambda: _child_tfx_example(args.home, IN_MEMORY),
            "tfx-example-mp": lambda: _child_tfx_example(args.home, MULTI_PROCESSING),
        }
        args.result.write_text(json.dumps(children[args.child]()))
        return 0

    # Repeats go round the cases (A B C, A B C, ...), so a machine that slows down for a while weighs on
    # every case alike instead of on whichever ran then.
    cases = args.cases.split(",")
    runs: dict[str, list] = {case: [] for case in cases}
    for attempt in range(args.repeats):
        for case in cases:
            print(f"{case}: run {attempt + 1}/{args.repeats} ...", flush=True)
            runs[case].append(_measure(case, args.model))
            seconds, _, rss, _, components = runs[case][-1]
            print(f"{case}: {seconds:.1f} s in the pipeline, {rss:.0f} MiB peak RSS", flush=True)
            _print_profile("  seconds per component", components)
    rows = {case: tuple(statistics.median(r[i] for r in runs[case]) for i in range(3)) for case in cases}
    metrics = {case: _medians([r[3] for r in runs[case]]) for case in cases}

    reference = rows.get("tfx-example")
    print(f"\n{'case':<16} {'pipeline s':>10} {'process s':>10} {'peak MiB':>9} {'vs tfx-example':>15}")
    for case, (seconds, wall, rss) in rows.items():
        ratio = f"{seconds / reference[0]:.2f}" if reference else "-"
        print(f"{case:<16} {seconds:>10.1f} {wall:>10.1f} {rss:>9.0f} {ratio:>15}")
    if "ours" in rows and "retrain" in rows:
        print(f"retrain / first run: {rows['retrain'][0] / rows['ours'][0]:.2f}")
    for case in cases:
        _print_profile(f"{case}, seconds per component (medians)", _medians([r[4] for r in runs[case]]))
    if "retrain" in metrics and "retrain-cold" in metrics:
        _print_guard(metrics["retrain"], metrics["retrain-cold"])
    return 0


def _print_profile(label: str, components: dict) -> None:
    """Seconds per component, slowest first (nothing when there are none: TFX's own example)."""
    if not components:
        return
    slowest_first = sorted(components.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{name} {seconds:.1f}" for name, seconds in slowest_first)
    print(f"{label}: {shown}", flush=True)


def _medians(dicts: list[dict]) -> dict:
    """Per key, the median of the values the dicts have for it."""
    keys = {key for d in dicts for key in d}
    return {key: statistics.median(d[key] for d in dicts if key in d) for key in sorted(keys)}


def _print_guard(warm: dict, cold: dict) -> None:
    """The quality guard: the warm-started retrain against the cold one, same window and eval split."""
    for name, (higher_is_better, allowance) in GUARDS.items():
        if name not in warm or name not in cold:
            continue
        worse_by = (cold[name] - warm[name]) if higher_is_better else (warm[name] - cold[name])
        verdict = "within the guard" if worse_by <= allowance(cold[name]) else "OUTSIDE the guard"
        print(
            f"quality guard ({name}): warm {warm[name]:.4f}, cold {cold[name]:.4f}, warm worse by "
            f"{worse_by:+.4f} (allowed {allowance(cold[name]):.4f}): {verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
