"""WindowTransform: TFX's Transform for a window of spans that a schedule retrains on.

A warm retrain reuses the blessed model's analysis (its transform graph: vocabularies, scales) and
only applies it, in plain TensorFlow, so the Trainer can start from the blessed model's weights on the
encoding they were trained on; the window is re-analyzed every ``transform_reuses`` retrains, or
sooner when the preprocessing code, its config or the schema change (``reuse``, ``materialize``).

An analysis can use tf.Transform's analyzer cache keyed by span (``analyzer_cache: true``). TFX keys a
cached dataset by its file pattern, and the window WindowIngest writes is a new artifact (a new path)
every run: the cache would never hit. Here each span of the window's train split is its own dataset,
keyed by the span and the fingerprint of its files (``keys``), the same from run to run.
Entry point: ``WindowTransform`` (``component``).
"""
