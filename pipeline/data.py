"""Quarterly data spans from the Chicago taxi sample that ships inside the ``tfx`` package.

"New data arrives" means "a new ``span-<N>/`` folder appears" under the data root; CsvExampleGen
reads them through the ``span-{SPAN}/*`` pattern. Span 1 is 2013-Q1, span 16 is 2016-Q4. Each
span is written to a temporary folder and renamed, so a reader never sees half a span.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

SPAN_PATTERN = "span-{SPAN}/*"
_SPAN_DIR = re.compile(r"^span-(\d+)$")
FIRST_YEAR = 2013


def schema_path() -> Path:
    """The curated raw-data schema of the taxi spans, shipped in this package."""
    return Path(str(resources.files("pipeline") / "schema" / "taxi.pbtxt"))


def sample_csv() -> Path:
    """The taxi CSV inside the installed tfx package (15,002 rows, 2013-2016)."""
    import tfx

    path = Path(tfx.__file__).parent / "examples" / "chicago_taxi_pipeline" / "data" / "simple" / "data.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the installed tfx package has no taxi sample at {path}")
    return path


def quarter_span(timestamp: int) -> int:
    """Span number of a trip: one per quarter, counting from 2013-Q1 = 1."""
    when = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return (when.year - FIRST_YEAR) * 4 + (when.month - 1) // 3 + 1


def split_into_spans(source: Path | None = None) -> tuple[list[str], dict[int, list[list[str]]]]:
    """The CSV header and its rows grouped by span, in file order."""
    with open(source or sample_csv(), newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        ts = header.index("trip_start_timestamp")
        spans: dict[int, list[list[str]]] = defaultdict(list)
        for row in reader:
            spans[quarter_span(int(row[ts]))].append(row)
    return header, dict(sorted(spans.items()))


def present_spans(data_root: str | Path) -> list[int]:
    """Span numbers that exist under ``data_root``, ascending."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        return []
    found = (_SPAN_DIR.match(p.name) for p in data_root.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def empty_files(data_root: str | Path, span: int) -> list[str]:
    """Names of the span's files that hold nothing at all (not even a header): e.g. a cut-off copy."""
    folder = Path(data_root) / f"span-{span}"
    return sorted(
        str(p.relative_to(data_root)) for p in folder.glob("*") if p.is_file() and p.stat().st_size == 0
    )


def write_span(data_root: str | Path, span: int, header: list[str], rows: list[list[str]]) -> Path:
    """Write ``span-<span>/data.csv`` atomically (temp folder + rename). Existing spans are kept."""
    data_root = Path(data_root)
    target = data_root / f"span-{span}"
    if target.exists():
        return target
    data_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".span-{span}.", dir=data_root))
    try:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        (staging / "data.csv").write_text(buffer.getvalue())
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def init_spans(
    data_root: str | Path, spans: int | None = None, rows_per_span: int | None = None
) -> list[int]:
    """Write the first ``spans`` spans (all 16 by default); idempotent. Returns the spans written now.

    ``rows_per_span`` keeps only every k-th row so that a span has at most that many rows (tests, demos).
    """
    data_root = Path(data_root)
    header, by_span = split_into_spans()
    wanted = list(by_span)[: spans if spans is not None else len(by_span)]
    written = []
    for span in wanted:
        if (data_root / f"span-{span}").exists():
            continue
        write_span(data_root, span, header, _sample(by_span[span], rows_per_span))
        written.append(span)
        log.info("wrote span %d (%d rows)", span, len(_sample(by_span[span], rows_per_span)))
    return written


def add_span(data_root: str | Path, rows_per_span: int | None = None) -> int | None:
    """Write the next span after the ones present (new data arriving). None when all are present."""
    header, by_span = split_into_spans()
    present = set(present_spans(data_root))
    for span in by_span:
        if span not in present and (not present or span > max(present)):
            write_span(data_root, span, header, _sample(by_span[span], rows_per_span))
            return span
    return None


def _sample(rows: list[list[str]], limit: int | None) -> list[list[str]]:
    if limit is None or len(rows) <= limit:
        return rows
    step = -(-len(rows) // limit)  # ceiling division
    return rows[::step]
