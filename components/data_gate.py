"""The data gate: a predicate for ``tfx.dsl.Cond`` that lets only a span without anomalies go on.

ExampleValidator alone blocks nothing: it records anomalies and every downstream component still
runs. Put what trains inside ``with tfx.dsl.Cond(clean_span(example_validator)):`` and a span that
breaks the curated schema stops there, on every runner (the KFP / Vertex compiler turns it into a
trigger condition).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from tfx.dsl.placeholder.placeholder_base import logical_and

SPLITS = ("train", "eval")


def new_window(ingest):
    """True when no pushed version was trained on exactly the window ``ingest`` (a WindowIngest) holds:
    otherwise there is nothing new to train."""
    return ingest.outputs["examples"].future()[0].custom_property("trained_as") == 0


def clean_span(validator, splits: Sequence[str] = SPLITS):
    """True when ``validator`` (an ExampleValidator) found no anomaly in any of ``splits``."""
    blessed = validator.outputs["anomalies"].future()[0].custom_property("blessed")
    predicates = [blessed[split] == 1 for split in splits]
    return functools.reduce(logical_and, predicates)
