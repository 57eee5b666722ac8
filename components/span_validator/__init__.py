"""SpanValidator: TFX's ExampleValidator plus the rule TFDV leaves out, that a split with too few
examples (none at all included) is an anomaly. Entry point: ``SpanValidator`` (``component``); the
check is ``check.validate``, which BackfillSpans uses too.
"""
