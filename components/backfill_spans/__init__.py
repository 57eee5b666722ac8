"""BackfillSpans: on a first run, every older span ingested, summarized and validated in one Beam pass.

Entry point: ``BackfillSpans`` (``component``); the Beam graph and checks are ``ingest``.
"""
