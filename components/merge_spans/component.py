"""MergeSpans: the validated span window as ONE Examples artifact that Transform and Evaluator read.

A function-based TFX component (TFX generates its spec and executor from the signature); the copying is
``merge.merge_spans``. MLMD records the span artifacts as this component's inputs, so the lineage of a
model still names every span it was trained on.
"""

from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components.merge_spans.merge import merge_spans


@tfx.dsl.components.component
def MergeSpans(
    spans: tfx.dsl.components.InputArtifact[list[standard_artifacts.Examples]],
    examples: tfx.dsl.components.OutputArtifact[standard_artifacts.Examples],
) -> None:
    """Copy every split of every span into ``examples``; the splits are those all spans share."""
    merge_spans(spans, examples)
