"""Small real files shared by the component tests (no TensorFlow needed)."""

from pathlib import Path

TABLE_MAGIC = bytes.fromhex("57fb808b247547db")


def fake_version(base: Path, version: int, shards: int = 1) -> Path:
    """A version directory laid out like a SavedModel, enough for ``verify_version``."""
    directory = Path(base) / str(version)
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"\x0a\x03abc")
    (directory / "variables" / "variables.index").write_bytes(b"idx" + TABLE_MAGIC)
    for i in range(shards):
        (directory / "variables" / f"variables.data-{i:05d}-of-{shards:05d}").write_bytes(b"d")
    return directory
