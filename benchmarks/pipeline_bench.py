"""Time the tfx-canary pipeline against TFX's own taxi example, side by side, on this machine.

Cases (each run in a fresh subprocess, fresh home, median wall time and peak RSS of ``--repeats``):

- ``ours``: first run on all 16 spans (15,002 rows, ``span_window=16``), FnApiRunner in_memory: one
  pipeline run that also ingests and validates spans 1-15 (BackfillSpans, one Beam pass);
- ``ours-mp``: the same with Beam's ``multi_processing`` mode (the Beam-settings measurement);
- ``retrain``: one more span arrives after a first run on spans 1-15: time of that second run;
- ``tfx-example``: ``taxi_pipeline_native_keras`` from the installed tfx package on the same CSV,
  with in_memory Beam args (its best) and with its default ``multi_processing`` args.

Usage: ``.venv/bin/python benchmarks/pipeline_bench.py [--repeats 3] [--cases ours,retrain,...]``.
Takes minutes per case; it prints a table at the end. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
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
ALL_CASES = ("ours", "ours-mp", "retrain", "tfx-example", "tfx-example-mp")


def _child_ours(home: Path, beam: list[str], spans: int, retrain: bool) -> float:
    """Run our pipeline; with ``retrain``, time only the run after adding the last span."""
    from pipeline import data
    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    config = load_config(home=str(home), span_window=16, beam_args=tuple(beam))
    data.init_spans(config.paths.data_root, spans=spans - 1 if retrain else spans)
    if retrain:
        first = run_pipeline(config)
        print(f"  (untimed first run: {first.reason})", flush=True)
        data.add_span(config.paths.data_root)
    started = time.monotonic()
    result = run_pipeline(config)
    seconds = time.monotonic() - started
    print(f"  {result.reason}", flush=True)
    _print_profile(result.components)
    return seconds


def _print_profile(components: list) -> None:
    """Seconds per component, slowest first."""
    shown = ", ".join(f"{run.name} {run.seconds:.1f}" for run in sorted(components, key=lambda r: -r.seconds))
    print(f"  seconds per component: {shown}", flush=True)


def _child_tfx_example(home: Path, beam: list[str]) -> float:
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
    started = time.monotonic()
    tfx_v1.orchestration.LocalDagRunner().run(pipeline)
    return time.monotonic() - started


def _measure(case: str) -> tuple[float, float, float]:
    """(seconds inside the run, whole-process seconds, peak RSS MiB) of one case in a subprocess."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-{case}-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_ENABLE_FORK_SUPPORT": "false"}
    result_file = home / "seconds"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", case, "--home", str(home), "--result", str(result_file)],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=sys.stdout,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"case {case} failed (exit status {status}); rerun with --child to see why")
    seconds = float(result_file.read_text())
    shutil.rmtree(home, ignore_errors=True)
    return seconds, wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(ALL_CASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        children = {
            "ours": lambda: _child_ours(args.home, IN_MEMORY, 16, retrain=False),
            "ours-mp": lambda: _child_ours(args.home, ["--runner=FnApiRunner", *MULTI_PROCESSING], 16, False),
            "retrain": lambda: _child_ours(args.home, IN_MEMORY, 16, retrain=True),
            "tfx-example": lambda: _child_tfx_example(args.home, IN_MEMORY),
            "tfx-example-mp": lambda: _child_tfx_example(args.home, MULTI_PROCESSING),
        }
        args.result.write_text(str(children[args.child]()))
        return 0

    rows = {}
    for case in args.cases.split(","):
        runs = []
        for attempt in range(args.repeats):
            print(f"{case}: run {attempt + 1}/{args.repeats} ...", flush=True)
            runs.append(_measure(case))
            print(f"{case}: {runs[-1][0]:.1f} s in the pipeline, {runs[-1][2]:.0f} MiB peak RSS", flush=True)
        rows[case] = tuple(statistics.median(r[i] for r in runs) for i in range(3))

    reference = rows.get("tfx-example")
    print(f"\n{'case':<16} {'pipeline s':>10} {'process s':>10} {'peak MiB':>9} {'vs tfx-example':>15}")
    for case, (seconds, wall, rss) in rows.items():
        ratio = f"{seconds / reference[0]:.2f}" if reference else "-"
        print(f"{case:<16} {seconds:>10.1f} {wall:>10.1f} {rss:>9.0f} {ratio:>15}")
    if "ours" in rows and "retrain" in rows:
        print(f"retrain / first run: {rows['retrain'][0] / rows['ours'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
