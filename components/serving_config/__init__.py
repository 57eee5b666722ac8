"""ServingConfigGen: ``models.config`` and the two-phase stable/canary labels, after the Pusher.

Entry point: ``ServingConfigGen`` (``component``); the release logic it runs is in ``release``.
"""
