"""Command-line tools around the toolkit, one sub-package per family; run each with ``python -m``
from the repository root (``python -m tools.kit.build kit/``):

* ``tools.kit``: the tiny kit (``build``: tiny CLIP + miniature datasets; ``make_tiny_clip``,
  ``make_fixture_datasets``) and the synthetic ``world`` benchmark;
* ``tools.data``: preparing the real benchmarks (``check_datasets``, ``download_splits``);
* ``tools.experiments``: running and reading experiments (``train_cli``: train.py's parser and
  config; ``methods``: the method registry; ``layout``: where runs live; ``method_runs``: what the
  method scripts run; ``jobs``, ``run_identity``, ``results``, ``report``, ``parse_test_res``, ``tsne``);
* ``tools.demo``: ``make demo``'s two-method table on the kit.
"""
