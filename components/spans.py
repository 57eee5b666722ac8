"""What a span's artifacts carry: its span number, and whether its validation found anomalies.

Shared by the span components (backfill, window, merge) and the run summary.
"""

from __future__ import annotations

from tfx import types


def artifact_span(artifact: types.Artifact) -> int:
    """The span ExampleGen recorded (a custom property in TFX 1.21; the property stays 0)."""
    if artifact.has_custom_property("span"):
        value = artifact.get_string_custom_property("span")
        return int(value) if value else artifact.get_int_custom_property("span")
    return int(artifact.span)


def is_clean(anomalies: types.Artifact) -> bool:
    """True when ExampleValidator found no anomalies in any split of this artifact."""
    if not anomalies.has_custom_property("blessed"):
        return False
    blessed = dict(anomalies.get_json_value_custom_property("blessed") or {})
    return bool(blessed) and all(int(value) == 1 for value in blessed.values())
