"""The span window as a TFX resolver strategy (the logic is in ``window``)."""

from __future__ import annotations

import logging
from typing import Any

from tfx import types
from tfx import v1 as tfx

from components.span_window.window import ingested_examples, validated_examples_ids, validated_window
from components.spans import artifact_span

log = logging.getLogger(__name__)


class ValidatedSpanWindowStrategy(tfx.dsl.experimental.ResolverStrategy):
    """Resolver strategy: ``examples`` → the validated rolling window (config ``num_spans``).

    ``examples`` and ``anomalies`` are every such artifact of the pipeline (channels without a producer),
    so spans ingested by the first run's BackfillSpans count like the newest one.
    """

    def __init__(self, num_spans: int):
        self._num_spans = int(num_spans)

    def resolve_artifacts(self, store: Any, input_dict: dict[str, list[types.Artifact]]):
        clean_ids = validated_examples_ids(store, input_dict["anomalies"])
        window = validated_window(
            ingested_examples(store, input_dict["examples"]), clean_ids, self._num_spans
        )
        log.info("training window: spans %s", [artifact_span(a) for a in window])
        return {"examples": window, "anomalies": []} if window else None
