"""The commands' start-up: no garbage collection while the heavy modules import, then they are frozen
(in a fresh interpreter: the test process froze its own at collection)."""

import subprocess
import sys
import textwrap

from tests.project import ROOT


def test_collection_waits_during_the_imports_then_what_they_loaded_is_frozen_once():
    script = textwrap.dedent(
        """
        import gc
        from tfx_canary.startup import heavy_imports

        assert gc.isenabled() and gc.get_freeze_count() == 0
        with heavy_imports():
            assert not gc.isenabled()
            import json, email.parser  # something to load
        assert gc.isenabled() and gc.get_freeze_count() > 0
        frozen = gc.get_freeze_count()
        with heavy_imports():  # once per process: a second use freezes nothing more
            assert gc.isenabled()
        assert gc.get_freeze_count() == frozen
        print("ok")
        """
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_every_command_trains_with_keras_2_whatever_it_imports_first():
    """``import pipeline.pipeline`` alone touched tf.keras (Keras 3) before tf.Transform could ask for
    Keras 2; set before TensorFlow loads, the choice holds whatever is imported next."""
    script = textwrap.dedent(
        """
        import os
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
        from tfx_canary import cli
        assert cli.main(["serve", "--version"]) == 0  # any command; this one imports no TensorFlow
        import tensorflow as tf
        print(tf.keras.Model.__module__.split(".")[0])
        """
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "tf_keras"
