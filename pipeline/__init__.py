"""Stage 1 of the flow (**data -> pipeline** -> push -> config -> server -> router -> controller).

``create_pipeline(config)`` (``pipeline``) is the one TFX pipeline every runner uses; ``PipelineConfig``
(``config``) is its typed settings; ``run_pipeline`` (``runner``) runs it once locally and ``outcome``
reads back what it did; ``data`` writes the taxi example's spans. CLI: ``tfx-canary data``, ``run``.
"""
