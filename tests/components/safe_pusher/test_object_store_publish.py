"""The object-store publish rule, through tf.io.gfile on a non-POSIX filesystem.

TF 2.21 has no ``s3://`` filesystem (``UnimplementedError: File system scheme 's3' not
implemented``; tensorflow-io 0.37.1, the newest, fails to load against TF 2.21), and its built-in
``gs://`` client has a fixed endpoint, so no emulator can stand in for either. TF's own ``ram://``
filesystem takes the same non-local code path (no POSIX rename), which is what is checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from components.safe_pusher.publish import PublishError, list_files, publish_model
from fixtures.models import write_fixture_model


def test_publish_to_an_object_store_leaves_only_a_complete_version(tmp_path: Path) -> None:
    source = write_fixture_model(tmp_path / "model", 1)
    base = "ram://serving-test-ok/taxi_tips"
    version = publish_model(str(source), base, extra_files={"assets.extra/mlmd_uuid": b"42"})
    assert [name.rstrip("/") for name in tf.io.gfile.listdir(base)] == [str(version)]  # no staging left
    published = list_files(f"{base}/{version}")
    assert published == {**list_files(str(source)), "assets.extra/mlmd_uuid": 2}
    second = publish_model(str(source), base)
    assert second > version


def test_a_failed_object_store_publish_leaves_nothing(tmp_path: Path) -> None:
    not_a_model = tmp_path / "empty"
    (not_a_model / "variables").mkdir(parents=True)
    base = "ram://serving-test-bad/taxi_tips"
    with pytest.raises(PublishError, match="is not a SavedModel"):
        publish_model(str(not_a_model), base)
    assert not tf.io.gfile.exists(base) or tf.io.gfile.listdir(base) == []
