"""The metric names a PromQL query reads (promql-parser's AST), and the names a live scrape exposes."""

from __future__ import annotations

import re
import urllib.request

import promql_parser

# Grafana's variables, replaced by values of their kind so the query parses as Prometheus would see it.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$model": "m",
}


def substitute(query: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        query = query.replace(name, GRAFANA_VARIABLES[name])
    return query


def metric_names(query: str) -> set[str]:
    """Every metric a query selects (``name{...}`` and ``{__name__="name"}``); Grafana variables allowed."""
    query = substitute(query)
    label_values = re.fullmatch(r"label_values\(\s*([^,()]+?)\s*,\s*\w+\s*\)", query)
    if label_values:  # Grafana's variable query: label_values(metric_or_selector, label)
        query = label_values[1]
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(query), visit)
    return names


def scraped_names(url: str) -> set[str]:
    """Sample names in a Prometheus text exposition (``router_latency_seconds_bucket``, ...)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        re.match(r"[^\s{]+", line)[0]
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }
