"""The official GOPro cost model, rebuilt from our modules (benchmark reference only).

What makes the official step expensive (methods spec §8.2, §11.2), and how it is reproduced here:

* text: for each of the three views, a Python loop over the batch with one text-encoder call per
  image over its C prompts, always at the full 77 tokens (``PerImageLoopGOProCLIP`` below, built
  with ``TRUNCATE_TEXT False``);
* views: made on the training thread from the normalised batch tensor through the wrapping uint8
  PIL round trip, with B AugMix views of image 0 (``OFFICIAL True`` selects our
  ``GOPro.official_views``);
* test: all three branches run and two are discarded (``OFFICIAL True`` → ``TEST_BRANCHES all``).

Not reproduced (they would only make the reference slower): stacking every text layer's
activations (D18), the per-epoch test passes (D14), separate vision passes per view.
"""
from __future__ import annotations

from typing import Sequence

import torch

from trainers.gopro import GOPro, GOProCLIP
from trainers.prompting import encode_class_prompts

CONFIG = "vit_b16_official"
OPTS = ["TRAINER.GOPRO.TRUNCATE_TEXT", "False"]


class PerImageLoopGOProCLIP(GOProCLIP):
    """``GOProCLIP`` whose text features come from one text-encoder call per image and view."""

    def text_features(self, g_per_view: Sequence[torch.Tensor], views: Sequence[str]) -> torch.Tensor:
        learner = self.prompter.prompt_learner
        per_view = []
        for g, view in zip(g_per_view, views):
            contexts = learner.ctx + self.prompter.rho_for(view)(g)                      # [B, M, D_t]
            per_image = [encode_class_prompts(self.backbone, learner, learner.assemble(ctx), self.options)
                         for ctx in contexts]                                            # B × [C, E]
            per_view.append(torch.stack(per_image))
        return torch.stack(per_view)                                                    # [V, B, C, E]


def make_official_style(trainer: GOPro) -> GOPro:
    """Swap the trainer's model for the per-image-loop one (same learnable prompter and optimizer)."""
    options = trainer.model.options
    if not (options.OFFICIAL and not options.TRUNCATE_TEXT):
        raise ValueError(f"The official-style reference needs config {CONFIG} with {' '.join(OPTS)}")
    trainer.model = PerImageLoopGOProCLIP(trainer.backbone, trainer.model.prompter, options)
    return trainer
