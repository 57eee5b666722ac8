"""Whether a retrain reuses the blessed model's analysis (its transform graph) or analyzes the window.

A warm start loads weights trained on the blessed model's transform graph: its vocabularies, bucket
boundaries and scales. A re-analysis of the window changes them (a vocabulary ranked by frequency
reorders, a boundary moves), so the loaded weights would meet inputs encoded another way. A warm
retrain therefore keeps the blessed model's transform graph, and the Trainer warm-starts only onto the
graph its weights were trained on (``models.warm_start``). The window is analyzed afresh, and the
model trained from scratch, when:

- there is no blessed model, or it keeps no transform graph (exported before this rule);
- reuse is off (``transform_reuses: 0``, or warm start off);
- the preprocessing code, its ``custom_config``, the schema or tf.Transform's version changed since
  that analysis (``fingerprint``);
- that analysis has been reused by ``transform_reuses`` retrains in a row: a scheduled re-analysis, so
  vocabularies and scales follow the data.

Every transform graph WindowTransform writes carries ``ANALYSIS_FILE``: the fingerprint, how many
retrains in a row have reused the analysis, and the decision in words (the run summary shows it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import tensorflow as tf
import tensorflow_transform as tft

ANALYSIS_FILE = "analysis.json"


@dataclass(frozen=True)
class Analysis:
    fingerprint: str  # of what produced the analysis (``fingerprint``)
    reuses: int  # retrains in a row that reused it (0: this run analyzed the window)
    reason: str  # the decision, in words


def decide(base_transform_dir: str | None, fingerprint: str, max_reuses: int) -> tuple[bool, Analysis]:
    """Whether to reuse the transform graph in ``base_transform_dir`` (the blessed model's copy, None
    without one), and the record this run's transform graph gets."""

    def analyze(why: str) -> tuple[bool, Analysis]:
        return False, Analysis(fingerprint, 0, f"analyzed the window: {why}")

    if max_reuses <= 0:
        return analyze("reuse of the blessed model's analysis is off")
    if base_transform_dir is None:
        return analyze("no blessed model yet")
    base = read(base_transform_dir)
    if base is None:
        return analyze("the blessed model keeps no transform graph")
    if base.fingerprint != fingerprint:
        return analyze(
            "the preprocessing code, its config or the schema changed since the blessed model's analysis"
        )
    if base.reuses >= max_reuses:
        return analyze(
            f"the blessed model's analysis served {base.reuses} retrains in a row (transform_reuses)"
        )
    reuses = base.reuses + 1
    return True, Analysis(
        fingerprint,
        reuses,
        f"reused the blessed model's analysis (vocabularies, scales): retrain {reuses} of {max_reuses} "
        "before the next re-analysis",
    )


def read(transform_dir: str) -> Analysis | None:
    path = posixpath.join(transform_dir, ANALYSIS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return Analysis(**json.loads(handle.read()))


def write(transform_dir: str, analysis: Analysis) -> None:
    tf.io.gfile.makedirs(transform_dir)
    with tf.io.gfile.GFile(posixpath.join(transform_dir, ANALYSIS_FILE), "w") as handle:
        handle.write(json.dumps(asdict(analysis), sort_keys=True))


def fingerprint(preprocessing_fn: Callable, custom_config: str | None, schema: bytes) -> str:
    """What an analysis depends on besides the data: the source files of the package that defines
    ``preprocessing_fn`` (every ``.py`` in it, so a helper module it imports counts), its
    ``custom_config``, the schema, and tf.Transform's version."""
    digest = hashlib.sha256()
    digest.update(
        f"{preprocessing_fn.__module__}.{preprocessing_fn.__qualname__}\0{tft.__version__}\0".encode()
    )
    digest.update((custom_config or "").encode() + b"\0" + schema + b"\0")
    for name, path in _source_files(preprocessing_fn):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _source_files(fn: Callable) -> list[tuple[str, Path]]:
    """(name inside the package, path) of every ``.py`` file of the top-level package defining ``fn``
    (the file itself outside a package)."""
    try:
        spec = importlib.util.find_spec(fn.__module__.split(".")[0])
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        roots = [Path(location) for location in spec.submodule_search_locations]
        return sorted(
            (path.relative_to(root).as_posix(), path) for root in roots for path in root.rglob("*.py")
        )
    source = Path(inspect.getsourcefile(fn) or "")
    return [(source.name, source)]
