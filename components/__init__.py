"""Stage 2 of the flow (data -> **pipeline components** -> push -> config -> server -> router -> controller).

The project's custom TFX components, one folder each: ``component.py`` (spec and wiring),
``executor.py`` (the ``Do`` glue) and, where there is more than glue, a plain module the executor
calls and that is tested without TFX:

- ``window_ingest``: the latest K spans ingested, summarized and validated in one Beam pass each run,
  bad spans left out, the clean ones merged for Transform (``data_gate`` stops a run on a bad new span);
- ``window_transform``: TFX's Transform with each span its own dataset, so the analyzer cache of the
  spans a retrain has seen is reused (the ``analyzer_cache`` option);
- ``load_check``: the candidate served by a child model server, every signature over REST and gRPC;
- ``safe_pusher``: publish a model blessed by the Evaluator and the load check, atomically and once;
- ``serving_config``: ``models.config``, the stable/canary labels and the Model Registry aliases.
"""
