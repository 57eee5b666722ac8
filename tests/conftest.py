"""Process-wide settings every test needs before TensorFlow or Beam is imported, the order the test
files run in under ``make test`` (pytest-xdist, ``--dist loadfile``), and what the workers share."""

import fcntl
import gc
import os
import shutil
import sys

import pytest

from tfx_canary.startup import freeze_imported, use_keras_2

# No garbage collection while the test modules import TensorFlow, TFX and Beam; what they loaded is
# frozen once collected (tfx_canary.startup: the same start-up as the commands').
gc.disable()
# Quiet TensorFlow's C++ start-up chatter; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras 2 (tf_keras), as every command has it (tfx_canary.startup).
use_keras_2()
# gRPC fork support deadlocks Beam's worker processes (TFX 1.21 release notes).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# The long test files, longest first, by the worker-seconds each took in `make test` on the 2-core
# machine (`--durations=0`, December 2026). They start first and on workers of their own; a stale entry
# only makes the order a little worse.
LONG_FILES = (
    "tests/pipeline/test_pipeline_e2e.py",  # 148 s
    "tests/test_production_topology.py",  # 140 s
    "tests/scheduler/test_daemon_pipeline.py",  # 93 s
    "tests/test_wine_e2e.py",  # 57 s
    "tests/components/window_transform/test_executor.py",  # 54 s
    "tests/examples/test_library_pipeline.py",  # 38 s
    "tests/tfx_canary/test_demo.py",  # 35 s
)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_configure(config):
    if config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput"):
        freeze_imported()  # the xdist controller: it imports no tests and runs none


def pytest_collection_finish(session):
    if "apache_beam" in sys.modules:  # as a pipeline run does: the executor tests build Beam pipelines too
        from tfx_canary import beam_views

        beam_views.install()
    freeze_imported()


@pytest.fixture(scope="session")
def taxi_transforms(tmp_path_factory) -> dict:
    """Both taxi models' tf.Transform graphs over ``fixtures.taxi.ROWS`` rows: model -> (serialized
    rows, TFTransformOutput), read only.

    Analyzed once per test run, not once per worker and file: the first worker to ask writes them under
    the run's shared temporary directory, holding a lock the others wait on (each analysis is a Beam
    pipeline of about 5 CPU-s; the model and payload tests took four to six of them).
    """
    from fixtures.taxi import open_transforms, transform_models

    run_dir = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_dir = run_dir.parent  # the xdist run's own directory, above each worker's
    shared = run_dir / "taxi_transforms"
    out_dirs = {model: str(shared / model) for model in ("taxi_tips", "taxi_fare")}
    with open(run_dir / "taxi_transforms.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            shutil.rmtree(shared, ignore_errors=True)  # what a worker that failed half-way left
            transform_models(out_dirs)
            (shared / "done").touch()
    return open_transforms(out_dirs)


def pytest_collection_modifyitems(items):
    """The long files first, longest first; a stable sort keeps each file's own order."""
    rank = {path: index for index, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(_file_of(item.nodeid), len(LONG_FILES)))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without the plugin, nothing to schedule
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` that keeps two long files off one worker.

    xdist gives a worker its next file as soon as it has two tests or fewer left, so a worker starting a
    file of one long test (the production topology, the daemon, wine) took the next file in the queue
    with it, often another long one: one worker ran 383 s of tests while the other two ran 262 s and
    271 s. Here a worker still busy with a long file is given the next short file instead, and the next
    long file goes to a worker whose long work is done.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongFilesApart(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            busy_with_long = any(
                path in LONG_FILES and not all(unit.values())
                for path, unit in self.assigned_work.get(node, {}).items()
            )
            if busy_with_long:
                short = next((path for path in self.workqueue if path not in LONG_FILES), None)
                if short is not None:
                    self.workqueue.move_to_end(short, last=False)
            super()._assign_work_unit(node)

    return LongFilesApart(config, log)
