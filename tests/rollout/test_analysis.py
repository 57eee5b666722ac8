"""Canary analysis: verdicts from two windows' statistics (no server needed)."""

import pytest

from rollout.analysis import Criteria, Side, analyse, js_divergence


def sided(requests, errors=0, p99=0.01, predictions=None):
    return Side(requests, errors, p99, predictions or {1.0: requests})


def test_too_few_samples_is_inconclusive_never_pass():
    result = analyse(sided(10), sided(10), Criteria(min_requests=100))
    assert result["verdict"] == "inconclusive" and "too few samples" in result["reasons"][0]


def test_a_small_window_fails_a_canary_that_is_clearly_worse_and_never_passes_one():
    criteria = Criteria(min_requests=100, p99_slack_s=0.15)
    stable = sided(400, p99=0.01)
    # a canary answering in 0.9 s: 13 shadow answers came back (its tail quantile leaves 5 above it)
    slow = analyse(stable, sided(13, p99=0.9), criteria)
    assert slow["verdict"] == "fail" and "p99" in slow["reasons"][0], slow["reasons"]
    assert slow["reasons"][-1] == "clear on 13 canary samples (fewer than 100)"
    # with fewer than 10 its tail quantile is the median: not enough slow answers to tell
    assert analyse(stable, sided(8, p99=0.9), criteria)["verdict"] == "inconclusive"
    # 90 samples with 5 above the allowed p99 happen 1 time in 460 for a canary within the criteria
    assert analyse(stable, sided(90, p99=0.9), criteria)["verdict"] == "inconclusive"
    # errors: 5 of 6 is clear against a stable side without errors; 1 of 20 is not (18 % by chance at 1 %)
    errors = analyse(stable, sided(6, errors=5), criteria)
    assert errors["verdict"] == "fail" and "error rate" in errors["reasons"][0]
    assert analyse(stable, sided(20, errors=1), criteria)["verdict"] == "inconclusive"
    # against a stable side that errs too, 5 errors of 40 (12 %) are within reach of chance at 11 %
    assert analyse(sided(400, errors=40), sided(40, errors=5), criteria)["verdict"] == "inconclusive"
    # a stable side with too few samples judges nothing; a good canary on few samples never passes
    assert analyse(sided(50, p99=0.01), sided(13, p99=0.9), criteria)["verdict"] == "inconclusive"
    assert analyse(stable, sided(60), criteria)["verdict"] == "inconclusive"


def test_verdicts():
    criteria = Criteria(min_requests=100)
    assert analyse(sided(200), sided(200), criteria)["verdict"] == "pass"
    errors = analyse(sided(200), sided(200, errors=20), criteria)
    assert errors["verdict"] == "fail" and "error rate" in errors["reasons"][0]
    slow = analyse(sided(200, p99=0.01), sided(200, p99=0.05), criteria)
    assert slow["verdict"] == "fail" and "p99" in slow["reasons"][0]
    shifted = analyse(sided(200, predictions={1.0: 200}), sided(200, predictions={5.0: 200}), criteria)
    assert shifted["verdict"] == "fail" and "diverges" in shifted["reasons"][0]


def test_js_divergence_bounds():
    assert js_divergence({1: 5, 2: 5}, {1: 50, 2: 50}) == pytest.approx(0.0)
    assert js_divergence({1: 5}, {2: 5}) == pytest.approx(1.0)
    assert js_divergence({}, {1: 1}) is None
