"""Former home of the shared prompt-learner code, now split by job; these names still import from here.

* class prompts and the learnable context → ``trainers/prompts.py``;
* model bases and their output record → ``trainers/models.py``;
* the base trainer and the shared config keys → ``trainers/trainer_base.py``.

Nothing in this repository imports this module (``tests/test_layout.py``); it is kept for code
written against the old paths.
"""
from .models import (FixedTextCLIP, InstancePromptCLIP, ModelOutput, PromptedCLIP, StaticPromptCLIP,  # noqa: F401
                     StyleStatistics, TextFeatureCache, clip_logits, in_image_groups)
from .prompts import (CLASS_TOKEN_POSITIONS, ClassPrompts, PromptLearner, TextEncoding, bpe_tokens,  # noqa: F401
                      clean_classname, common_prefix_length, coop_context, encode_class_prompts, init_context)
from .trainer_base import (ClipPromptTrainer, adapt_state_dict, add_coop_keys, add_prompt_keys,  # noqa: F401
                           check_choices)
