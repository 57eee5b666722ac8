"""Beam's ``PipelineOptions.view_as`` without parsing every option again at each call.

Each ``view_as(cls)`` builds an argparse parser of every option class Beam knows and parses the flags
anew, and each attribute read of a view sorts the names of every option. Beam calls ``view_as`` a few
times for every transform it applies (``Pipeline.apply`` alone twice), so building the Beam pipelines
of one Transform analysis spent 0.7-1.0 s in it (py-spy), and the window_transform executor tests took
52-54 CPU-s without ``install()`` and 46-48 with it (two runs each). Beam's maintainers proposed the
same memo (apache/beam#9925, not merged).

A view holds only that parse and a reference to the options' shared values (``_all_options``), so one
view per options object and class serves every caller, and a write through any view still lands in the
shared values. ``install()`` is checked against the Beam in ``requirements/constraints.txt`` and does
nothing under another one. The local runner installs it for every component; our Beam components'
executors install it too, for a step that runs alone in its container (Vertex AI, Kubeflow).
"""

from __future__ import annotations

import logging
import weakref

log = logging.getLogger(__name__)

CHECKED_BEAM = "2.77."  # the apache-beam release whose PipelineOptions this was read against
_views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # options -> {(cls, flags id): view}
_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # options -> (parse, sorted names)
_installed = False


def install() -> bool:
    """Memoize ``view_as`` and the visible option names (once per process); whether it is in place."""
    global _installed
    if _installed:
        return True
    import apache_beam
    from apache_beam.options.pipeline_options import PipelineOptions

    if not apache_beam.__version__.startswith(CHECKED_BEAM):
        log.info("Beam %s is not %sx: view_as is left as it is", apache_beam.__version__, CHECKED_BEAM)
        return False
    view_as, visible_option_list = PipelineOptions.view_as, PipelineOptions._visible_option_list

    def memoized_view_as(self, cls):
        by_class = _views.setdefault(self, {})
        key = (cls, id(self._flags))
        view = by_class.get(key)
        if view is None:
            view = by_class[key] = view_as(self, cls)
        return view

    def memoized_visible_option_list(self):
        parsed = self.__dict__.get("_visible_options")
        known = _names.get(self)
        if known is None or known[0] is not parsed:
            known = _names[self] = (parsed, visible_option_list(self))
        return known[1]

    PipelineOptions.view_as = memoized_view_as
    PipelineOptions._visible_option_list = memoized_visible_option_list
    _installed = True
    return True
