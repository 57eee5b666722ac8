"""``gs://`` objects read and written with generation preconditions (google-cloud-storage).

Object stores have no rename and no file lock, so the release files on GCS are written
compare-and-swap: every object is read with its generation, and a write names the generation it
replaces (``if_generation_match``; 0 means "must not exist yet"). A writer that lost a race gets
``PreconditionLost`` and starts its read-modify-write again. ``GcsLock`` makes the config store's
read-modify-write exclusive across machines the same way (create-if-absent, with an expiry a
crashed holder cannot outlive).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from dataclasses import dataclass

from tfx_canary.errors import CanaryError


class PreconditionLost(CanaryError):
    """Someone else wrote the object since it was read."""


@functools.cache
def storage_client():
    """The google-cloud-storage client (credentials from the environment); tests put a fake here."""
    from google.cloud import storage

    return storage.Client()


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://"):
        raise ValueError(f"{uri} is not a gs:// URI")
    bucket, _, name = uri[len("gs://") :].partition("/")
    return bucket, name


@dataclass(frozen=True)
class GcsObject:
    uri: str

    def _blob(self):
        bucket, name = _split(self.uri)
        return storage_client().bucket(bucket).blob(name)

    def read(self) -> tuple[str | None, int]:
        """(text, generation); (None, 0) when the object does not exist."""
        from google.api_core import exceptions

        bucket, name = _split(self.uri)
        blob = storage_client().bucket(bucket).get_blob(name)
        if blob is None:
            return None, 0
        try:
            return blob.download_as_text(if_generation_match=blob.generation), int(blob.generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return self.read()  # replaced or deleted between the two calls: read the new one

    def write(self, text: str, if_generation: int | None = None) -> int:
        """Upload ``text`` (whole: readers see the old or the new object); with ``if_generation``, only
        if the object is still that generation (0: only if it does not exist). Returns the new one."""
        from google.api_core import exceptions

        blob = self._blob()
        try:
            blob.upload_from_string(text, if_generation_match=if_generation)
            return int(blob.generation)
        except exceptions.PreconditionFailed:
            raise PreconditionLost(
                f"{self.uri} changed since it was read (generation {if_generation})"
            ) from None

    def delete(self, if_generation: int) -> bool:
        """Delete the object if it is still ``if_generation``; False if it is gone or changed."""
        from google.api_core import exceptions

        try:
            self._blob().delete(if_generation_match=if_generation)
            return True
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return False


class GcsLock:
    """An exclusive lock object ``<uri>``: created only if absent, deleted by its holder, and taken
    over once ``ttl_s`` has passed (a writer that died holding it blocks others for at most that)."""

    def __init__(self, uri: str, ttl_s: float = 60.0, timeout_s: float = 60.0) -> None:
        self.object = GcsObject(uri)
        self.ttl_s, self.timeout_s = ttl_s, timeout_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._generation: int | None = None

    def __enter__(self) -> GcsLock:
        from release.config_store import LockTimeout

        deadline = time.monotonic() + self.timeout_s
        while True:
            body = json.dumps({"holder": self.holder, "expires": time.time() + self.ttl_s})
            try:
                self._generation = self.object.write(body, if_generation=0)
                return self
            except PreconditionLost:
                text, generation = self.object.read()
                expired = text is not None and json.loads(text).get("expires", 0) < time.time()
                if expired and self.object.delete(generation):
                    continue  # its holder died: take it over
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"{self.object.uri} has been held for over {self.timeout_s:.0f} s; is a writer stuck?"
                )
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self._generation is not None:
            self.object.delete(self._generation)
            self._generation = None
