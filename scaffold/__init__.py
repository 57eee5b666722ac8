"""Stage 0 of the flow (**a team's own data** -> data -> pipeline -> push -> ...): ``tfx-canary init``.

``project.init_project`` scaffolds a working project from a sample CSV, a label and a task: a config
file, a small package with a tf.Transform ``preprocessing_fn`` and a Keras ``run_fn`` (rendered from
``templates/``), a TFDV-inferred schema to curate and the first span. CLI: ``tfx-canary init``.
"""
