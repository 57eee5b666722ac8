"""The pipeline benchmark keeps TFX's own output (its pip and Keras lines) off the terminal."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.pipeline_bench import fd_to


def test_a_subprocess_writes_to_the_log_and_the_terminal_is_restored(tmp_path, capfd):
    log = tmp_path / "tfx.log"
    with fd_to(log):
        os.write(1, b"from this process\n")  # what sys.stdout writes outside pytest's capture
        subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
    os.write(1, b"after\n")

    assert log.read_text() == "from this process\nfrom a child process\n"
    assert capfd.readouterr().out == "after\n"
