"""The span window: train on the latest K spans whose validation found no anomalies.

Entry point: ``ValidatedSpanWindowStrategy`` (``strategy``); the lineage queries are ``window``.
"""
