"""The same pipeline on Vertex AI / Kubeflow Pipelines: cloud settings (``cloud_config``), compilation
(``compile``), Vertex jobs and schedules (``vertex``), KFP recurring runs (``kfp_recurring``). CLI:
``tfx-canary compile``, ``submit``, ``schedule`` (``cli``)."""
