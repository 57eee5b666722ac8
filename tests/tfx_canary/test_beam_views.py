"""Beam's ``PipelineOptions.view_as`` memoized (``tfx_canary.beam_views``): one view per options object and
class, and every view still reads and writes the options' shared values."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)
from apache_beam.testing.util import assert_that, equal_to

from pipeline.config import DEFAULT_BEAM_ARGS
from tfx_canary import beam_views


@pytest.fixture(autouse=True)
def installed():
    assert beam_views.install()  # the pinned Beam: in place (the test session installs it too)


def test_one_view_per_options_and_class_parsed_from_the_flags():
    options = PipelineOptions(["--runner=FnApiRunner", "--direct_num_workers=2", "--setup_file=/x/setup.py"])
    direct = options.view_as(DirectOptions)
    assert direct is options.view_as(DirectOptions)
    assert direct.direct_num_workers == 2 and options.view_as(StandardOptions).runner == "FnApiRunner"
    other = PipelineOptions(["--direct_num_workers=3"])
    assert other.view_as(DirectOptions) is not direct and other.view_as(DirectOptions).direct_num_workers == 3
    assert options.get_all_options()["setup_file"] == "/x/setup.py"


def test_a_write_through_one_view_is_seen_through_every_other():
    options = PipelineOptions(["--runner=FnApiRunner"])
    options.view_as(DebugOptions).add_experiment("beam_fn_api")
    options.view_as(SetupOptions).save_main_session = True
    assert options.view_as(DebugOptions).lookup_experiment("beam_fn_api")
    assert options.get_all_options()["save_main_session"] is True
    assert options.view_as(StandardOptions).runner == "FnApiRunner"
    options.view_as(StandardOptions).runner = "DirectRunner"
    assert options.get_all_options()["runner"] == "DirectRunner"
    with pytest.raises(AttributeError):
        options.view_as(StandardOptions).no_such_option = 1


def test_a_pipeline_runs_on_memoized_views():
    with beam.Pipeline(argv=list(DEFAULT_BEAM_ARGS)) as pipeline:
        squares = pipeline | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * x)
        assert_that(squares, equal_to([1, 4, 9]))


def test_another_beam_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(beam_views, "_installed", False)
    monkeypatch.setattr(beam, "__version__", "2.78.0")
    assert beam_views.install() is False


@pytest.mark.parametrize(
    "module", ["components.window_ingest.executor", "components.window_transform.executor"]
)
def test_our_beam_executors_install_it_where_they_run_alone(module, monkeypatch):
    """A Vertex step runs one executor in TFX's container entrypoint, never our runner's install()."""
    import importlib

    def unmemoized(self, cls):
        raise AssertionError("no Beam pipeline should be built here")

    monkeypatch.setattr(beam_views, "_installed", False)
    monkeypatch.setattr(PipelineOptions, "view_as", unmemoized)
    executor = importlib.import_module(module).Executor()
    with pytest.raises(KeyError):  # nothing to ingest or transform: Do stops at its first input
        executor.Do({}, {}, {})
    assert beam_views._installed and PipelineOptions.view_as is not unmemoized
