"""Process-wide settings every test needs before TensorFlow or Beam is imported."""

import os

# Quiet TensorFlow's C++ start-up chatter; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras 2 (tf_keras), as every pipeline run in production has it: tf.Transform asks for it on import,
# which comes too late in a test process where another module touched tf.keras first (in-process
# pipeline runs then trained Keras 3 models).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# gRPC fork support deadlocks Beam's worker processes (TFX 1.21 release notes).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def pytest_collection_modifyitems(items):
    """End-to-end files first (a stable sort keeps each file's own order): run in parallel
    (``make test``), the longest work starts first and the short files fill in around it."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)
