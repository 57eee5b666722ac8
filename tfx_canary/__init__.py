"""The ``tfx-canary`` command line (``cli``), the whole-loop demo (``demo``), and what every stage
shares: the project home and its paths (``home``), the error and exit-code convention (``errors``),
shared CLI options (``options``) and the quiet terminal (``logs``)."""

__version__ = "0.1.0"
