"""Training engine: trainer registry and the base trainer classes.

Unlike upstream, the ~20 built-in DA/SSL trainers (and ``TrainerXU`` / ``SimpleNet``, which only
they use) are not shipped: clients register their own ``TrainerX`` subclasses, so importing this
package registers nothing.
"""

from .build import TRAINER_REGISTRY, build_trainer
from .trainer import SimpleTrainer, TrainerBase, TrainerX
