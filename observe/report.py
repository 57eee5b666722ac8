"""``tfx-canary report``: one self-contained HTML page per release, from the audit trail.

A release starts where a version is listed (``phase1``) and runs until the next one is: its config
generations (canary start, each traffic step, promotion or rollback, retirement) come from ML Metadata
(``release.audit.history``), and each analysis recorded with a transition is read from the file the
audit saved, ``<home>/releases/<model>/analysis-<generation>.json``. An analysis judges the step that
was in force before its transition (a pass is recorded with the next step, a fail with the rollback).

Every page is built in memory first and then written whole (temporary name, then rename), so a
missing analysis file stops the report before anything is written.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from dataclasses import dataclass, field

from observe import plots
from release.serving_dir import join, read_text, write_text_atomic
from tfx_canary.errors import CanaryError, UsageError

VERDICT_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#b26a00"}


class ReportError(CanaryError):
    """The audit trail cannot make a report (no history, a missing or unreadable analysis file)."""


@dataclass
class StepAnalysis:
    step: str
    generation: int  # the generation whose transition recorded it
    at: float
    kind: str
    analysis: dict
    path: str


@dataclass
class Release:
    model: str
    version: int
    entries: list[dict] = field(default_factory=list)
    steps: list[StepAnalysis] = field(default_factory=list)  # filled by ``load_steps``
    analysed: list[tuple[dict, dict | None]] = field(default_factory=list)  # (entry, the one before)

    @property
    def outcome(self) -> str:
        kinds = [entry["kind"] for entry in self.entries]
        if "rollback" in kinds:
            return "promoted, then rolled back" if "promote" in kinds else "rolled back"
        if "promote" in kinds:
            return "promoted"
        if "first-stable" in kinds:
            return "first stable version"
        if "canary-start" in kinds:
            last = self.steps[-1].analysis.get("verdict") if self.steps else ""
            return "held (inconclusive)" if last == "inconclusive" else "on trial"
        return "listed, not labelled yet"


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")


def group_releases(model: str, entries: list[dict]) -> list[Release]:
    """The history split into releases: a new one at each version listed (``phase1``)."""
    releases: list[Release] = []
    previous: dict | None = None
    for entry in entries:
        if entry["kind"] == "phase1" or not releases:
            added = set(entry["versions"]) - set(previous["versions"] if previous else ())
            version = max(added or entry["versions"] or [-1])
            releases.append(Release(model, version))
        releases[-1].entries.append(entry)
        if entry["analysis"] is not None:
            releases[-1].analysed.append((entry, previous))
        previous = entry
    return releases


def load_steps(release: Release, releases_dir: str) -> Release:
    """Each analysed step of the release, read from the file the audit saved."""
    release.steps = [
        _saved_analysis(release.model, entry, previous, releases_dir) for entry, previous in release.analysed
    ]
    return release


def _saved_analysis(model: str, entry: dict, previous: dict | None, releases_dir: str) -> StepAnalysis:
    path = join(releases_dir, model, f"analysis-{entry['generation']}.json")
    text = read_text(path)
    what = f"the analysis behind generation {entry['generation']} ({entry['kind']} at {_when(entry['at'])})"
    if text is None:
        raise ReportError(f"{model}: {what} is recorded in ML Metadata but its file {path} is missing")
    try:
        analysis = json.loads(text)
    except ValueError as error:
        raise ReportError(f"{model}: {what}: {path} is not JSON ({error})") from None
    if not isinstance(analysis, dict) or "verdict" not in analysis:
        raise ReportError(f"{model}: {what}: {path} holds no verdict")
    recorded = analysis.get("step")
    step = recorded.get("name", "") if isinstance(recorded, dict) else ""
    step = step or (previous or {}).get("step", "") or entry["step"] or "?"
    return StepAnalysis(step, entry["generation"], entry["at"], entry["kind"], analysis, path)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1240px; color: #222; }
h1 { margin-bottom: .2rem; } .sub { color: #555; margin-top: 0; }
.badge { display: inline-block; padding: .1rem .6rem; border-radius: .8rem; color: #fff; font-size: .9rem; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .4rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } .num { text-align: right; font-variant-numeric: tabular-nums; }
section.step { border: 1px solid #ddd; border-radius: .4rem; padding: .2rem 1rem 1rem; margin: 1rem 0; }
img { max-width: 100%; display: block; } .legend span { font-weight: 600; }
footer { color: #777; font-size: .8rem; margin-top: 2rem; }
"""


def _badge(text: str, color: str) -> str:
    return f'<span class="badge" style="background:{color}">{html.escape(text)}</span>'


def _outcome_color(outcome: str) -> str:
    if "rolled back" in outcome:
        return VERDICT_COLORS["fail"]
    if outcome in ("promoted", "first stable version"):
        return VERDICT_COLORS["pass"]
    return VERDICT_COLORS["inconclusive"]


def _number(value, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value * scale:.{digits}f}{unit}"


TIMELINE_COLUMNS = ("time", "gen", "transition", "actor", "versions", "labels", "canary", "step", "reason")


def _timeline(entries: list[dict]) -> str:
    rows = []
    for e in entries:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(e["labels"].items())) or "none"
        cells = (_when(e["at"]), e["generation"], e["kind"], e["actor"], e["versions"], labels,
                 f"{e['canary_weight']:.0%}", e["step"] or "-", e["reason"])  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in TIMELINE_COLUMNS)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _step_section(index: int, step: StepAnalysis) -> str:
    a = step.analysis
    verdict = str(a.get("verdict", ""))
    reasons = a.get("reasons") or []
    items = "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons) or "<li>within criteria</li>"
    rows = []
    for name in ("stable", "canary"):
        side = a.get(name, {})
        rows.append(
            f"<tr><td>{name}</td><td class=num>{_number(side.get('requests'))}</td>"
            f"<td class=num>{_number(side.get('errors'))}</td>"
            f"<td class=num>{_number(a.get('error_rate', {}).get(name), 100, 2, '%')}</td>"
            f"<td class=num>{_number(side.get('p99_s'), 1000, 1, ' ms')}</td></tr>"
        )
    quantile = a.get("tail_quantile") or 0.99
    divergence = a.get("divergence")
    figure = plots.step_figure(a)
    image = plots.data_uri(figure)
    return (
        f'<section class="step" id="step-{index}"><h3>Step {html.escape(step.step)} '
        f"{_badge(verdict, VERDICT_COLORS.get(verdict, '#555'))}</h3>"
        f"<p class=sub>judged when generation {step.generation} was written ({html.escape(step.kind)}, "
        f"{_when(step.at)}); Jensen-Shannon divergence of the predictions "
        f"{'n/a' if divergence is None else f'{divergence:.3f}'}</p>"
        f"<ul>{items}</ul>"
        f"<table><tr><th>side</th><th class=num>requests</th><th class=num>errors</th>"
        f"<th class=num>error rate</th><th class=num>latency {plots.quantile_name(quantile)}</th></tr>"
        f"{''.join(rows)}</table>"
        f'<img alt="step {html.escape(step.step)}: error rate, latency and predictions, canary vs stable" '
        f'src="{image}"></section>'
    )


def render(release: Release, generated_at: float) -> str:
    """The whole page: summary, timeline of generations, then every analysed step."""
    first, last = release.entries[0], release.entries[-1]
    outcome = release.outcome
    title = f"{release.model}: release of version {release.version}"
    timeline_image = plots.data_uri(plots.timeline_figure(release.entries))
    steps = "".join(_step_section(i, s) for i, s in enumerate(release.steps, 1)) or (
        "<p>No analysed step in this release (the first version of a model is not compared).</p>"
    )
    sources = "".join(f"<li>{html.escape(s.path)}</li>" for s in release.steps) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{html.escape(title)} {_badge(outcome, _outcome_color(outcome))}</h1>
<p class="sub">{_when(first["at"])} to {_when(last["at"])}; stable before: version
{html.escape(str(first["stable"]))}, stable now: version {html.escape(str(last["stable"]))};
generations {first["generation"]}-{last["generation"]}</p>
<h2>Timeline</h2>
<img alt="canary share of traffic per config generation" src="{timeline_image}">
{_timeline(release.entries)}
<h2>Steps</h2>
<p class="legend"><span style="color:{plots.STABLE_COLOR}">stable</span> against
<span style="color:{plots.CANARY_COLOR}">canary</span>, over the same window.</p>
{steps}
<footer>Generated {_when(generated_at)} by <code>tfx-canary report</code> from ML Metadata and the
saved analyses:<ul>{sources}</ul></footer>
</body></html>
"""


def _index(model: str, pages: list[tuple[Release, str]]) -> str:
    rows = "".join(
        f'<tr><td><a href="{html.escape(os.path.basename(path))}">version {r.version}</a></td>'
        f"<td>{_when(r.entries[0]['at'])}</td><td>{_badge(r.outcome, _outcome_color(r.outcome))}</td>"
        f"<td class=num>{len(r.steps)}</td></tr>"
        for r, path in reversed(pages)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(model)}: releases</title>
<style>{STYLE}</style></head><body><h1>{html.escape(model)}: releases</h1>
<table><tr><th>release</th><th>started</th><th>outcome</th><th>analysed steps</th></tr>{rows}</table>
</body></html>
"""


def write_reports(
    store, releases_dir: str, model: str, out_dir: str, version: int | None = None
) -> tuple[list[str], str]:
    """Write the pages of ``model`` (or of one release) and an index; (page paths, index path)."""
    from release import audit

    entries = [e for e in audit.history(store, model) if e["kind"] != "unchanged"]
    if not entries:
        raise ReportError(
            f"no release history for model {model!r}: nothing to report (wrong --home or --model?)"
        )
    releases = group_releases(model, entries)
    chosen = releases if version is None else [r for r in releases if r.version == version]
    if not chosen:
        raise UsageError(
            f"model {model!r} has no release of version {version}; it has {[r.version for r in releases]}"
        )
    directory = join(out_dir, model)
    now = dt.datetime.now().timestamp()
    pages = [
        (join(directory, f"release-{r.version}.html"), render(load_steps(r, releases_dir), now))
        for r in chosen
    ]
    for path, text in pages:  # everything rendered: now write, each file whole
        write_text_atomic(path, text)
    listed = [(r, join(directory, f"release-{r.version}.html")) for r in releases]
    index = join(directory, "index.html")
    write_text_atomic(index, _index(model, [(r, path) for r, path in listed if os.path.exists(path)]))
    return [path for path, _ in pages], index
