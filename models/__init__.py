"""Stage 1 (train): the TFX user code side. ``contract`` says what the pipeline hands any model's code
(task, label, classes in ``custom_config``; signature names); ``export`` saves any Keras model with
the serving, raw-features and TFMA signatures. The rest is the shipped Chicago taxi examples: their
config files (``catalog``, ``configs/``), features (``features``), the tf.Transform ``preprocessing_fn``
(``preprocessing``) and the Keras ``run_fn`` (``model``)."""
