"""publish_model: staged copy, verification, rename, unique versions, nothing left on failure."""

import os

import pytest
import tensorflow as tf

from components.safe_pusher import publish
from release.serving_dir import list_versions


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny real SavedModel."""
    path = str(tmp_path_factory.mktemp("model") / "m")
    module = tf.Module()
    module.w = tf.Variable([1.0, 2.0])
    module.f = tf.function(lambda x: x * module.w[0], input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, path)
    return path


def _children(base):
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def test_publish_creates_a_complete_version_with_extra_files(saved_model, tmp_path):
    base = str(tmp_path / "serving" / "m")
    version = publish.publish_model(
        saved_model, base, {"assets.extra/mlmd_uuid": b"model_id=3"}, now=lambda: 1000
    )
    assert version == 1000 and _children(base) == ["1000"]
    published = os.path.join(base, "1000")
    with open(os.path.join(published, "assets.extra", "mlmd_uuid"), "rb") as handle:
        assert handle.read() == b"model_id=3"
    source_files = publish.list_files(saved_model)
    published_files = publish.list_files(published)
    assert {k: published_files[k] for k in source_files} == source_files
    loaded = tf.saved_model.load(published)
    assert loaded.f(tf.constant([3.0])).numpy().tolist() == [3.0]


def test_versions_are_unique_and_monotonic_even_when_the_clock_is_behind(saved_model, tmp_path):
    base = str(tmp_path / "m")
    os.makedirs(os.path.join(base, "5000"))
    assert publish.publish_model(saved_model, base, now=lambda: 10) == 5001
    assert publish.publish_model(saved_model, base, now=lambda: 10) == 5002
    assert list_versions(base) == [5000, 5001, 5002]


def test_already_published_model_is_found(saved_model, tmp_path):
    base = str(tmp_path / "m")
    assert publish.find_published_version(saved_model, base) is None
    version = publish.publish_model(saved_model, base, {"assets.extra/x": b"1"})
    assert publish.find_published_version(saved_model, base) == version


def test_failure_leaves_no_version_and_no_staging(saved_model, tmp_path):
    base = str(tmp_path / "m")
    # "variables" is a folder in the model, so writing a file there fails after the copy started.
    with pytest.raises(Exception):  # noqa: B017 - the filesystem error type depends on the TF version
        publish.publish_model(saved_model, base, {"variables": b"oops"})
    assert _children(base) == []


def test_a_folder_without_saved_model_is_refused(tmp_path):
    source = tmp_path / "not_a_model"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"1")
    with pytest.raises(publish.PublishError, match=r"no saved_model\.pb"):
        publish.publish_model(str(source), str(tmp_path / "m"))
    assert not (tmp_path / "m").exists() or _children(str(tmp_path / "m")) == []
