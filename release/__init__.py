"""Stage 3 of the flow (data -> pipeline -> **push -> config** -> server -> router -> controller).

The release of one model on TF Serving, without TFX: the state machine (``state``), the serving
directory contract (``serving_dir``), the config store that writes ``models.config`` and the release
record (``config_store``), the operations that combine them with the model server (``operations``,
``server_client``), the audit trail in ML Metadata (``audit``, ``metadata``). CLI: ``tfx-canary
status``, ``promote``, ``rollback``, ``retire``, ``history`` (``cli``).
"""
