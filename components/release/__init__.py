"""Release logic for canary rollout on TensorFlow Serving: pure state machine, config files, audit."""
