"""Look at a release (after stage 6): what an operator sees of a canary, drawn from what the router, the
model server and the audit trail already record.

- ``dashboard``: the Grafana dashboard (built with grafanalib), per model stable vs canary side by side;
  ``python -m observe.dashboard`` writes ``serving_configs/grafana/dashboards/`` and its k8s ConfigMap;
- ``report``: ``tfx-canary report --model M``, one self-contained HTML page per release from the audit
  trail and the saved analyses, with ``plots`` (matplotlib, embedded as data URIs);
- ``cli``: registers ``report``.

It reads the release record (``release``) and imports nothing from the router or the controller.
"""
