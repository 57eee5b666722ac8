"""An in-memory stand-in for google-cloud-storage that enforces generation preconditions as GCS does.

Only what ``release.object_store`` calls: ``bucket().blob()``/``get_blob()``, ``download_as_text``,
``upload_from_string`` and ``delete`` with ``if_generation_match`` (0 = the object must not exist),
raising the same ``google.api_core`` exceptions (412 PreconditionFailed, 404 NotFound).
"""

from __future__ import annotations

import itertools
import random
import threading
import time

from google.api_core import exceptions


class FakeStorage:
    def __init__(self, jitter_s: float = 0.0) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.lock = threading.Lock()
        self.generations = itertools.count(1_700_000_000_000_000)
        self.jitter_s = jitter_s  # a pause inside each upload, to widen races in tests
        self.conflicts = 0

    def bucket(self, name: str) -> _Bucket:
        return _Bucket(self, name)


class _Bucket:
    def __init__(self, storage: FakeStorage, name: str) -> None:
        self.storage, self.name = storage, name

    def blob(self, name: str) -> _Blob:
        return _Blob(self.storage, self.name, name)

    def get_blob(self, name: str) -> _Blob | None:
        with self.storage.lock:
            found = self.storage.objects.get((self.name, name))
        if found is None:
            return None
        blob = _Blob(self.storage, self.name, name)
        blob.generation = found[1]
        return blob


class _Blob:
    def __init__(self, storage: FakeStorage, bucket: str, name: str) -> None:
        self.storage, self.key = storage, (bucket, name)
        self.generation: int | None = None

    def _check(self, if_generation_match: int | None) -> None:
        current = self.storage.objects.get(self.key)
        if if_generation_match is None:
            return
        if (current[1] if current else 0) != if_generation_match:
            self.storage.conflicts += 1
            raise exceptions.PreconditionFailed(f"412 {self.key[1]}: generation is not {if_generation_match}")

    def download_as_text(self, if_generation_match: int | None = None) -> str:
        with self.storage.lock:
            if self.key not in self.storage.objects:
                raise exceptions.NotFound(f"404 {self.key[1]}")
            self._check(if_generation_match)
            return self.storage.objects[self.key][0].decode()

    def upload_from_string(self, data, if_generation_match: int | None = None) -> None:
        if self.storage.jitter_s:
            time.sleep(random.uniform(0, self.storage.jitter_s))
        with self.storage.lock:
            self._check(if_generation_match)
            self.generation = next(self.storage.generations)
            self.storage.objects[self.key] = (
                data.encode() if isinstance(data, str) else data,
                self.generation,
            )

    def delete(self, if_generation_match: int | None = None) -> None:
        with self.storage.lock:
            if self.key not in self.storage.objects:
                raise exceptions.NotFound(f"404 {self.key[1]}")
            self._check(if_generation_match)
            del self.storage.objects[self.key]
