"""Canary analysis: verdicts from two windows' statistics (no server needed)."""

import pytest

from rollout.analysis import Criteria, Side, analyse, js_divergence


def sided(requests, errors=0, p99=0.01, predictions=None):
    return Side(requests, errors, p99, predictions or {1.0: requests})


def test_too_few_samples_is_inconclusive_never_pass():
    result = analyse(sided(10), sided(10), Criteria(min_requests=100))
    assert result["verdict"] == "inconclusive" and "too few samples" in result["reasons"][0]


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
