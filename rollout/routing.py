"""Which version a client request goes to: the data-plane core the REST and gRPC routers share.

TF Serving sends a request without a version or label to the *highest loaded* version, which is the
canary as soon as it loads. The router rewrites every bare inference call to ``stable`` or ``canary``:

- the split follows the ``canary_weight`` in the model's release record (written by the rollout
  controller or ``tfx-canary``), re-read when the record or ``models.config`` changes;
- it is sticky: the request key (``X-Request-Key`` header, ``x-request-key`` gRPC metadata; a user or
  session id) is hashed into [0, 1), so one key always sees the same version; requests without a key
  are split at random;
- ``shadow_fraction`` of stable traffic is also sent to ``canary``, the answer measured and discarded;
- a model that is not in the config, or has no ``stable`` version yet, is forwarded unchanged, so the
  model server answers it exactly as it would answer the client directly.

Model names from requests are only looked up in the parsed config, never used to build a path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from dataclasses import dataclass

from release import config_store
from release.serving_dir import CONFIG_NAME, RECORD_DIR, read_text
from release.state import CANARY, PREVIOUS, STABLE
from tfx_canary.errors import ConfigError

log = logging.getLogger(__name__)

KEY_HEADER = "X-Request-Key"
KEY_METADATA = "x-request-key"  # gRPC metadata keys are lower case
LABEL_HEADER = "X-Served-Label"
KNOWN_LABELS = (STABLE, CANARY, PREVIOUS)


def key_bucket(key: str) -> float:
    """A stable position in [0, 1) for a request key."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


# TF Serving's answer to a label its config does not have (yet): server_core.cc, InvalidArgument.
UNKNOWN_LABEL_MESSAGE = "Unrecognized servable version label: "


@dataclass(frozen=True)
class Route:
    stable: bool  # a `stable` label exists
    canary_weight: float  # 0 unless a canary is on trial
    shadow_fraction: float
    generation: int  # the release record's generation this route was read from
    stable_version: int | None = None  # the versions the labels name in the record
    canary_version: int | None = None


@dataclass(frozen=True)
class Decision:
    """Where one bare request goes: ``label`` None means "forward unchanged".

    ``version`` is the version the record gives ``label``: the router asks for it by number when the
    model server answers that it does not know the label yet (a new label is written to
    ``models.config`` before the server's next poll reads it).
    """

    label: str | None
    shadow: bool = False
    version: int | None = None


def is_unknown_label(message: str, label: str) -> bool:
    """Whether a model server's error message says it has no ``label`` (yet)."""
    return bool(label) and message.endswith(UNKNOWN_LABEL_MESSAGE + label)


class RouteTable:
    """The routes of every model in ``models.config``, re-read when the config or records change."""

    def __init__(self, serving_root: str, refresh_s: float = 0.2):
        self.serving_root = serving_root
        self.refresh_s = refresh_s
        self._routes: dict[str, Route] = {}
        self._stamp: tuple = ()
        self._checked = 0.0
        self._lock = threading.Lock()

    def _fingerprint(self) -> tuple:
        paths = [os.path.join(self.serving_root, CONFIG_NAME)]
        records = os.path.join(self.serving_root, RECORD_DIR)
        if os.path.isdir(records):
            paths += sorted(os.path.join(records, n) for n in os.listdir(records) if n.endswith(".json"))
        stamp = []
        for path in paths:
            try:
                stat = os.stat(path)
                stamp.append((path, stat.st_mtime_ns, stat.st_size))
            except FileNotFoundError:
                stamp.append((path, 0, 0))
        return tuple(stamp)

    def _load(self) -> dict[str, Route]:
        path = os.path.join(self.serving_root, CONFIG_NAME)
        config = config_store.parse_config(read_text(path) or "", path)
        routes = {}
        for entry in config.model_config_list.config:
            state = config_store.read_release(self.serving_root, entry.name).state
            on_trial = state.in_flight is not None
            routes[entry.name] = Route(
                stable=state.stable is not None,
                canary_weight=state.canary_weight if on_trial else 0.0,
                shadow_fraction=state.shadow_fraction if on_trial else 0.0,
                generation=state.generation,
                stable_version=state.stable,
                canary_version=state.canary,
            )
        return routes

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return
        with self._lock:  # others wait here rather than read routes that are not loaded yet
            if now - self._checked < self.refresh_s:
                return
            stamp = self._fingerprint()
            if stamp != self._stamp:
                try:
                    self._routes = self._load()
                    self._stamp = stamp
                except (ConfigError, OSError) as e:
                    log.error("keeping the previous routes: %s", e)  # like TF Serving's poller
            self._checked = now

    def get(self, model: str) -> Route | None:
        self.refresh()
        return self._routes.get(model)

    def all(self) -> dict[str, Route]:
        self.refresh()
        return dict(self._routes)


class Routing:
    """The decisions, over a ``RouteTable``; the REST and gRPC routers both ask this."""

    def __init__(self, table: RouteTable):
        self.table = table

    def decide(self, model: str, key: str | None) -> Decision:
        """Stable or canary for a bare request; unchanged when the model has no stable version."""
        route = self.table.get(model)
        if route is None or not route.stable:
            return Decision(None)
        position = key_bucket(key) if key else random.random()
        if position < route.canary_weight:
            return Decision(CANARY, version=route.canary_version)
        # shadow picks from the far end of the key space, so live canary users are not also mirrored
        return Decision(
            STABLE, shadow=(1.0 - position) <= route.shadow_fraction, version=route.stable_version
        )

    def metric_names(self, model: str, label: str, pinned_version: bool) -> tuple[str, str]:
        """(model, label) as metric labels: names chosen by clients must not grow the metric set."""
        model = model if self.table.get(model) is not None else "other"
        if label not in KNOWN_LABELS:
            label = "version" if pinned_version else "other"
        return model, label
