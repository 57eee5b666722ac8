"""Process-wide settings every test needs before TensorFlow or Beam is imported."""

import os

# Quiet TensorFlow's C++ start-up chatter; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# gRPC fork support deadlocks Beam's worker processes (TFX 1.21 release notes).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
