"""SafePusher: publish a blessed model into ``<serving_root>/<model>/<version>`` atomically and only once.

Entry point: ``SafePusher`` (``component``); the publishing rules are ``publish``, the extra files
``assets_extra``.
"""
