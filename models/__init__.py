"""The TFX user code of the shipped example models (the Chicago taxi data): which models exist
(``catalog``), their features (``features``), the tf.Transform ``preprocessing_fn`` (``preprocessing``)
and the Keras ``run_fn`` with the exported serving signatures (``model``)."""
