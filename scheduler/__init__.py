"""Retraining on a schedule on one machine: the local daemon (``daemon``, ``tfx-canary schedule
--local``) and cron handling for it, Vertex and Kubeflow Pipelines (``cron``)."""
