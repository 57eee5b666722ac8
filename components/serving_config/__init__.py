"""The ServingConfigGen component: models.config and two-phase version labels after the Pusher."""

from components.serving_config.component import ServingConfigGen

__all__ = ["ServingConfigGen"]
