"""Names TensorFlow Serving itself fixes for what it reads from a model's directory.

The embedded server reads them here; everything else takes them through ``release.serving_dir``, the
one module that owns the serving-directory contract.
"""

from __future__ import annotations

import re

SAVED_MODEL_FILE = "saved_model.pb"
# saved_model_warmup_util: requests replayed at load, read from this file of a version directory...
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# ... at most this many of them (kMaxNumRecords).
MAX_WARMUP_RECORDS = 1000
# MonitoringConfig.prometheus_config.path when none is given.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_VERSION_NAME = re.compile(r"^[0-9]+$")
_MAX_VERSION = 2**63 - 1


def version_of(name: str) -> int | None:
    """The version a child directory of a model's base path stands for, or None if it is not one.

    TF Serving loads every child whose name is a (64-bit) integer and ignores the rest, which is why a
    version is staged under a non-integer name and renamed when complete.
    """
    name = name.rstrip("/")
    if _VERSION_NAME.match(name) and int(name) <= _MAX_VERSION:
        return int(name)
    return None
