"""Artifact types of the canary components (``TYPE_NAME`` in the ``namespace.Name`` form Vertex needs)."""

from tfx.types import artifact


class ServingConfig(artifact.Artifact):
    """One generation of ``models.config`` for one model; custom properties say who labelled what, and why."""

    TYPE_NAME = "canary.ServingConfig"
