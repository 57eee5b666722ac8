"""Quarterly spans from the packaged taxi CSV."""

import csv

from pipeline import data


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_sample_splits_into_16_quarters_without_losing_rows():
    header, spans = data.split_into_spans()
    assert list(spans) == list(range(1, 17))
    assert sum(len(rows) for rows in spans.values()) == 15002
    assert "trip_start_timestamp" in header


def test_quarter_span_counts_quarters_from_2013():
    assert data.quarter_span(1356998400) == 1  # 2013-01-01
    assert data.quarter_span(1483228799) == 16  # 2016-12-31 23:59:59


def test_init_is_idempotent_and_add_span_appends(tmp_path):
    root = tmp_path / "taxi"
    assert data.init_spans(root, spans=2, rows_per_span=50) == [1, 2]
    first = (root / "span-1" / "data.csv").read_text()
    assert data.init_spans(root, spans=2, rows_per_span=50) == []
    assert (root / "span-1" / "data.csv").read_text() == first
    rows = _rows(root / "span-1" / "data.csv")
    assert 1 < len(rows) <= 51 and rows[0][0] == "pickup_community_area"
    assert data.add_span(root, rows_per_span=50) == 3
    assert data.present_spans(root) == [1, 2, 3]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_full_spans_keep_every_row(tmp_path):
    root = tmp_path / "taxi"
    data.init_spans(root, spans=1)
    _, spans = data.split_into_spans()
    assert len(_rows(root / "span-1" / "data.csv")) == len(spans[1]) + 1
