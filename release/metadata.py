"""The project's one ML Metadata database (SQLite under the home), opened the same way everywhere.

The pipeline's runs, the release transitions and the rollout analyses all live in it, so the lineage
of a served version (data spans, model, blessing, push, config generations) is one query away.
"""

from __future__ import annotations

import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """The MLMD store in ``metadata_path``, created (with its folder) if missing."""
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)
