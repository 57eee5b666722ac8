"""WindowIngest: the training window (the latest K spans of the data root) ingested, summarized and
validated in one Beam pass each run; spans with anomalies left out and reported, the clean ones merged
for Transform. No resolver: the same component on every runner, Vertex included.

Entry point: ``WindowIngest`` (``component``); the Beam pass is ``ingest``, the window rules ``window``.
"""
