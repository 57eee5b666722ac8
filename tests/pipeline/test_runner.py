"""What `tfx-canary run` does before the pipeline (finish a release a killed run left half-done), and an
interrupt inside a component stays an interrupt."""

from __future__ import annotations

from fixtures.models import write_fixture_model
from fixtures.served_root import ServedRoot
from pipeline.config import load_config
from pipeline.runner import finish_pending_release, interrupted
from release import audit, operations
from release.metadata import open_store
from tests.release.version_dirs import fake_version


def test_a_version_listed_by_a_killed_run_is_labelled_by_the_next(tmp_path):
    write_fixture_model(tmp_path / "serving" / "m", 1, offset=2.0)
    with ServedRoot(tmp_path / "serving") as served:
        # what a run killed while ServingConfigGen waited for AVAILABLE leaves: listed, not labelled
        operations.publish(operations.Target(served.root, "m"), 1)
        config = load_config(home=str(tmp_path), serving_model_name="m", server_address=served.address)
        said = []
        finish_pending_release(config, said.append)
        state = served.target().read().state
        assert state.label_map == {"stable": 1, "canary": 1} and state.candidate is None
        assert "finishing its release first" in said[0] and "now `stable`" in said[1]
        entries = audit.history(open_store(config.metadata_path), "m")
        assert [(e["kind"], e["actor"]) for e in entries] == [("first-stable", "pipeline")]


def test_a_version_that_failed_to_load_is_unlisted_again(tmp_path):
    write_fixture_model(tmp_path / "serving" / "m", 1, offset=2.0)
    with ServedRoot(tmp_path / "serving") as served:
        operations.publish(served.target(), 1)
        fake_version(tmp_path / "serving" / "m", 2)  # complete on disk, but not a SavedModel
        operations.publish(operations.Target(served.root, "m"), 2)
        config = load_config(home=str(tmp_path), serving_model_name="m", server_address=served.address)
        said = []
        finish_pending_release(config, said.append)
        state = served.target().read().state
        assert state.versions == (1,) and state.stable == 1
        assert "failed to load, so it was unlisted again" in said[1]


def test_an_interrupt_inside_a_beam_transform_is_still_an_interrupt():
    """Beam turns a KeyboardInterrupt (Ctrl-C, or the demo's SIGTERM) raised while a transform runs into
    its own RuntimeError; the run must stop as interrupted (exit 130), not report a failed component."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    def stop(_):
        raise KeyboardInterrupt

    options = PipelineOptions(["--runner=FnApiRunner", "--direct_running_mode=in_memory"])
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = pipeline | beam.Create([1]) | beam.Map(stop)
    except Exception as error:  # what run_pipeline catches
        assert not isinstance(error, KeyboardInterrupt) and "KeyboardInterrupt" in str(error)
        assert interrupted(error)
    else:
        raise AssertionError("the pipeline did not fail")
    assert not interrupted(RuntimeError("a component failed"))
    try:
        raise ValueError("outer") from RuntimeError("inner")
    except ValueError as error:
        assert not interrupted(error)
