"""The release report's pictures, drawn with matplotlib into PNG data URIs (a page needs no other file).

- ``step_figure``: one analysed window, canary against stable: error rate, tail latency and the
  prediction histograms (the fractions per bucket of what each side answered);
- ``timeline_figure``: the canary's share of traffic over the release, one point per config generation.

Figures are ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: no pyplot, no global
state, nothing needs a display.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math

from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

STABLE_COLOR = "#1f77b4"  # matplotlib's C0 and C1: the report's legend names them
CANARY_COLOR = "#ff7f0e"
SIDES = (("stable", STABLE_COLOR), ("canary", CANARY_COLOR))


def data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _no_data(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="#666666")
    axes.set_xticks([])
    axes.set_yticks([])


def _bars(axes, values: dict[str, float | None], unit: str, scale: float, digits: int, floor: float) -> None:
    """Stable and canary side by side, each bar labelled with its value (``floor``: the least y range)."""
    names = [name for name, _ in SIDES]
    heights = [(values.get(name) or 0.0) * scale for name in names]
    bars = axes.bar(names, heights, color=[color for _, color in SIDES], width=0.6)
    for bar, name in zip(bars, names, strict=True):
        value = values.get(name)
        label = "n/a" if value is None else f"{value * scale:.{digits}f}{unit}"
        axes.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    axes.set_ylim(0, max(max(heights) * 1.3, floor))
    axes.set_ylabel(unit.strip())


def quantile_name(quantile: float) -> str:
    """0.99 -> "p99"; the small-window tail quantiles (0.9444...) -> "p94"."""
    return f"p{quantile * 100:.0f}"


def _bucket_label(bound: str) -> str:
    return "inf" if bound == "+Inf" else f"{float(bound):g}"


def _prediction_axes(axes, predictions: dict | None) -> None:
    axes.set_title("Predictions (share per bucket, upper bound)")
    if not predictions or not any(predictions.get(name) for name, _ in SIDES):
        _no_data(axes, "no predictions recorded in this window")
        return
    bounds = sorted(
        {b for name, _ in SIDES for b in predictions.get(name, {})},
        key=lambda b: math.inf if b == "+Inf" else float(b),
    )
    width = 0.4
    for offset, (name, color) in zip((-width / 2, width / 2), SIDES, strict=True):
        counts = predictions.get(name, {})
        total = sum(counts.values()) or 1.0
        axes.bar(
            [i + offset for i in range(len(bounds))],
            [counts.get(b, 0.0) / total for b in bounds],
            width=width,
            color=color,
            label=name,
        )
    axes.set_xticks(range(len(bounds)), [_bucket_label(b) for b in bounds], rotation=45, fontsize=8)
    axes.set_ylabel("share of predictions")
    axes.legend(loc="best", fontsize=8)
    missing = [name for name, _ in SIDES if not predictions.get(name)]
    if missing:  # e.g. a canary whose every request failed
        note = f"no predictions from {' or '.join(missing)}"
        axes.text(0.02, 0.95, note, transform=axes.transAxes, va="top", fontsize=8, color="#666666")


def step_figure(analysis: dict) -> Figure:
    """Error rate, tail latency and prediction histograms of one window, canary beside stable."""
    figure = Figure(figsize=(12, 3.4), layout="constrained")
    error_axes, latency_axes, prediction_axes = figure.subplots(1, 3, width_ratios=(1, 1, 2))
    counts = {name: analysis.get(name, {}) for name, _ in SIDES}
    if all(counts[name].get("requests") for name, _ in SIDES):
        _bars(error_axes, analysis.get("error_rate", {}), "%", 100.0, 2, floor=1.0)
        error_axes.set_title("Error rate")
        quantile = analysis.get("tail_quantile") or 0.99
        latency = {name: counts[name].get("p99_s") for name, _ in SIDES}
        _bars(latency_axes, latency, " ms", 1000.0, 1, floor=1.0)
        latency_axes.set_title(f"Latency {quantile_name(quantile)}")
    else:
        for axes, title in ((error_axes, "Error rate"), (latency_axes, "Latency")):
            axes.set_title(title)
            _no_data(axes, "no requests on a side")
    _prediction_axes(prediction_axes, analysis.get("predictions"))
    return figure


def timeline_figure(entries: list[dict]) -> Figure:
    """The canary's share of live traffic per config generation, each point named by its transition."""
    figure = Figure(figsize=(12, 2.8), layout="constrained")
    axes = figure.subplots()
    times = [dt.datetime.fromtimestamp(entry["at"]) for entry in entries]
    weights = [entry["canary_weight"] * 100 for entry in entries]
    axes.step(times, weights, where="post", color=CANARY_COLOR, linewidth=2)
    axes.scatter(times, weights, color=CANARY_COLOR, zorder=3)
    for when, weight, entry in zip(times, weights, entries, strict=True):
        text = entry["kind"] + (f" {entry['step']}" if entry["kind"] == "traffic" and entry["step"] else "")
        axes.annotate(
            text, (when, weight), textcoords="offset points", xytext=(2, 6), fontsize=7, rotation=30
        )
    axes.set_ylim(-5, 125)
    axes.set_ylabel("canary share of traffic (%)")
    axes.set_title("Config generations")
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))
    figure.autofmt_xdate()
    return figure
