"""Command-line tools around the toolkit, one sub-package per family; run each with ``python -m``
from the repository root (``python -m tools.kit.build kit/``):

* ``tools.kit``: the tiny kit (``build``: tiny CLIP + miniature datasets; ``make_tiny_clip``,
  ``make_fixture_datasets``) and the synthetic ``world`` benchmark;
* ``tools.data``: preparing the real benchmarks (``check_datasets``, ``download_splits``);
* ``tools.experiments``: reading experiments (``report``, ``parse_test_res``, ``tsne``); the run
  machinery they read through (registry, layout, run identity, the job engine) is the ``runs`` package;
* ``tools.demo``: ``make demo``'s two-method table on the kit.
"""
