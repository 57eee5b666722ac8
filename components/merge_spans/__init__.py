"""MergeSpans: the training window as one Examples artifact. Entry point: ``MergeSpans`` (``component``)."""
