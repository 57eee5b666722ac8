"""Stage 2 of the flow (data -> **pipeline components** -> push -> config -> server -> router -> controller).

The project's custom TFX components, one folder each: ``component.py`` (spec and wiring),
``executor.py`` (the ``Do`` glue) and, where there is more than glue, a plain module the executor
calls and that is tested without TFX:

- ``span_validator``: ExampleValidator, plus a minimum number of examples per split;
- ``backfill_spans``: a first run's older spans ingested, summarized and validated in one Beam pass;
- ``span_window``: the resolver strategy that picks the latest K validated spans;
- ``merge_spans``: the window as one Examples artifact for Transform and the Evaluator;
- ``safe_pusher``: publish a blessed model atomically, once, with warm-up and MLMD files;
- ``serving_config``: ``models.config`` and the stable/canary labels after the push.
"""
