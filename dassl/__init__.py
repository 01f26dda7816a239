"""Dassl: a domain-adaptation / generalisation toolbox (clean-room reimplementation of the 0.6.3 API).

Importing the top-level package has no side effects: sub-packages (``dassl.engine``,
``dassl.data``, ...) are imported only when a client asks for them, so a script that only needs
``dassl.utils`` does not pay for tensorboard, scikit-learn or the dataset registry.
"""

__version__ = "0.6.3"
__author__ = "Kaiyang Zhou (API); clean-room reimplementation"
__homepage__ = "https://kaiyangzhou.github.io/"
