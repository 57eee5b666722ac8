"""A stop signal that lands while the main thread waits on the stop event ends the wait."""

import subprocess
import sys
import textwrap

from tests.project import ROOT


def test_a_signal_during_the_wait_on_the_stop_event_never_hangs_it():
    """Thousands of timer signals each landing inside ``stop.wait``; ``event.set()`` from the handler
    hung this loop within about a thousand (run at fault-finding time on Python 3.11)."""
    script = textwrap.dedent(
        """
        import os, signal, threading
        from tfx_canary.signals import stop_on_signals

        threading.Timer(20, lambda: (os.write(2, b"hung"), os._exit(3))).start()
        for trial in range(3000):
            stop = threading.Event()
            stop_on_signals(stop, signals=[signal.SIGALRM])
            signal.setitimer(signal.ITIMER_REAL, 0.0003)
            while not stop.wait(0.00005):
                pass
        os.write(1, b"stopped 3000 times")
        os._exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped 3000 times", "")


def test_the_extra_action_runs_in_the_handler_with_the_signal_number():
    script = textwrap.dedent(
        """
        import os, signal, threading
        from tfx_canary.signals import stop_on_signals

        stop, seen = threading.Event(), []
        previous = stop_on_signals(stop, also=seen.append)
        assert set(previous) == {signal.SIGINT, signal.SIGTERM}
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10) and seen == [signal.SIGTERM]
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
