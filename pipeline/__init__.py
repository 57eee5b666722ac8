"""Stage 1 of the flow (**data -> pipeline** -> push -> config -> server -> router -> controller).

``create_pipeline(config)`` (``pipeline``) is the one TFX pipeline every runner uses, for any model a
config file names; ``PipelineConfig`` (``config``) is its typed settings, ``preflight`` checks them
against the code, schema and data before a run; ``run_pipeline`` (``runner``) runs it once locally and
``outcome`` reads back what it did; ``data`` writes the taxi example's spans and adds CSV spans. CLI:
``tfx-canary data``, ``run``.
"""
