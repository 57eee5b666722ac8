"""The serving-directory contract: staging names, version listing, atomic writes."""

import os

import pytest

from release import serving_dir


def test_staging_names_are_never_versions():
    assert serving_dir.staging_name(3) == ".3.tmp"
    assert serving_dir.is_staging(".3.tmp") and not serving_dir.is_staging("3")
    assert serving_dir.is_staging(".models.config.tmp") is False


def test_versions_are_the_integer_named_folders(tmp_path):
    for name in ("1", "20", ".3.tmp", "abc", "7x"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version")
    assert serving_dir.list_versions(str(tmp_path)) == [1, 20]
    assert serving_dir.list_versions(str(tmp_path / "missing")) == []


def test_text_is_replaced_in_one_step(tmp_path):
    path = str(tmp_path / "sub" / "models.config")
    serving_dir.write_text_atomic(path, "one")
    serving_dir.write_text_atomic(path, "two")
    assert serving_dir.read_text(path) == "two"
    assert os.listdir(tmp_path / "sub") == ["models.config"]  # no temp file left behind
    assert serving_dir.read_text(str(tmp_path / "nope")) is None


def test_a_model_written_in_place_appears_only_under_its_version(tmp_path):
    seen_while_writing = []

    def write(staging):
        os.makedirs(staging)
        seen_while_writing.append(sorted(os.listdir(tmp_path / "base")))
        with open(os.path.join(staging, "saved_model.pb"), "wb") as handle:
            handle.write(b"\x0a\x03abc")

    final = serving_dir.write_local_version(tmp_path / "base", 3, write)
    assert final == str(tmp_path / "base" / "3")
    assert seen_while_writing == [[".3.tmp"]]  # no integer-named folder while the model is written
    assert sorted(os.listdir(tmp_path / "base")) == ["3"]
    with pytest.raises(FileExistsError, match="already exists"):
        serving_dir.write_local_version(tmp_path / "base", 3, write)
