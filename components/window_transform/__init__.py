"""WindowTransform: TFX's Transform, with tf.Transform's analyzer cache keyed by span, so a retrain
analyzes only the spans it has not analyzed before.

TFX keys a cached dataset by its file pattern, and the window WindowIngest writes is a new artifact
(a new path) every run: the cache would never hit. Here each span of the window's train split is its
own dataset, keyed by the span and the fingerprint of its files (``keys``), the same from run to run.
Entry point: ``WindowTransform`` (``component``).
"""
