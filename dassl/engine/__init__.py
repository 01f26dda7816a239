"""Training engine: trainer registry and the base trainer classes.

Unlike upstream, the ~20 built-in DA/SSL trainers are not shipped (the CLIP clients register their
own), so importing this package registers nothing.
"""

from .build import TRAINER_REGISTRY, build_trainer
from .trainer import SimpleNet, SimpleTrainer, TrainerBase, TrainerX, TrainerXU
