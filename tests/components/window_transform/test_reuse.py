"""When a retrain reuses the blessed model's analysis, and what changes the fingerprint of one."""

import pytest

from components.window_transform import reuse
from models import preprocessing


@pytest.fixture
def base(tmp_path):
    """A blessed model's kept transform graph whose analysis was reused once."""
    reuse.write(str(tmp_path), reuse.Analysis("print-1", 1, "reused"))
    return str(tmp_path)


def test_a_retrain_reuses_until_the_scheduled_reanalysis(base):
    reusable, analysis = reuse.decide(base, "print-1", max_reuses=2)
    assert reusable and analysis == reuse.Analysis(
        "print-1",
        2,
        "reused the blessed model's analysis (vocabularies, scales): "
        "retrain 2 of 2 before the next re-analysis",
    )
    reuse.write(base, analysis)
    assert reuse.read(base) == analysis
    reusable, analysis = reuse.decide(base, "print-1", max_reuses=2)
    assert not reusable and analysis.reuses == 0 and analysis.fingerprint == "print-1"
    assert analysis.reason == (
        "analyzed the window: the blessed model's analysis served 2 retrains in a row (transform_reuses)"
    )


@pytest.mark.parametrize(
    ("has_base", "fingerprint", "max_reuses", "why"),
    [
        (False, "print-1", 6, "no blessed model yet"),
        (True, "print-1", 0, "reuse of the blessed model's analysis is off"),
        (True, "print-2", 6, "the preprocessing code, its config or the schema changed"),
    ],
)
def test_the_window_is_analyzed_and_the_run_says_why(base, has_base, fingerprint, max_reuses, why):
    reusable, analysis = reuse.decide(base if has_base else None, fingerprint, max_reuses)
    assert not reusable and analysis.reuses == 0 and analysis.fingerprint == fingerprint
    assert analysis.reason.startswith(f"analyzed the window: {why}")


def test_a_blessed_model_without_a_record_is_analyzed_afresh(tmp_path):
    assert reuse.read(str(tmp_path)) is None
    reusable, analysis = reuse.decide(str(tmp_path), "print-1", 6)
    assert not reusable
    assert analysis.reason == "analyzed the window: the blessed model keeps no transform graph"


def test_the_fingerprint_follows_the_code_its_config_and_the_schema(tmp_path, monkeypatch):
    fn = preprocessing.preprocessing_fn
    first = reuse.fingerprint(fn, '{"a": 1}', b"schema")
    assert reuse.fingerprint(fn, '{"a": 1}', b"schema") == first
    assert reuse.fingerprint(fn, '{"a": 2}', b"schema") != first
    assert reuse.fingerprint(fn, '{"a": 1}', b"schema 2") != first
    # a module file outside any package: its own source counts
    module = tmp_path / "user_preprocessing.py"
    module.write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_preprocessing

    before = reuse.fingerprint(user_preprocessing.preprocessing_fn, None, b"schema")
    module.write_text("def preprocessing_fn(inputs):\n    return dict(inputs)\n")
    assert reuse.fingerprint(user_preprocessing.preprocessing_fn, None, b"schema") != before
