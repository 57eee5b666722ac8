"""Stages 5 and 6 of the flow (... -> model server -> **router -> controller**).

The canary router that splits client traffic between ``stable`` and ``canary`` (``router``), the
analysis that compares them (``analysis``), the controller that moves through the plan and promotes or
rolls back (``controller``), a bounded steady client load (``load``). CLI: ``tfx-canary route``,
``rollout`` (``cli``). It imports nothing from ``pipeline`` or ``components``.
"""
