"""The official GOPro cost model: GOPro with ``OFFICIAL True``, computed the way the official code
computes it (benchmark reference only; methods spec §8.2, §8.4 and §11.2).

It gives the numbers of our official mode (``tests/test_bench_official.py`` compares losses and
logits) and does the official amount of work:

* **three branches, one after the other**, in training *and* at test (D12): the original batch,
  the MoCo-v3 view and the AugMix view, each with its own vision pass and its own prompts;
* **views on the training thread**: each branch turns the normalised batch tensor back into PIL
  images through the wrapping uint8 cast (D8), then MoCo-v3 per image, or AugMix with **B views of
  every image**, of which image 0's are kept (D7): B² AugMix runs per batch, 10,000 per test batch
  of 100;
* **vision**: CLIP's own ``VisionTransformer`` with every block's output kept and stacked
  ([L, B, T, D_v], the patched tower's second output), the token statistics taken from the stack;
* **text**: a Python loop over the images, one call per image over its C prompts at the full 77
  tokens through CLIP's own text transformer (``nn.MultiheadAttention`` with the causal mask),
  every block's output stacked on each call (D18).

Not in the timed step or evaluation: the test-split evaluation the official training runs after
every epoch (D14), i.e. one more full evaluation per epoch.

``bench/bench_prompts.py`` runs it as "GOPro official-style". Run as a script, it times our
default GOPro against it in the setting the official code itself was timed in (issue 15: random
ViT with 12 blocks of width 256, 224 px, 32 px patches, a 4-layer text tower, one CPU thread,
batch 4), so its ratios can be checked against the official code's:

    python bench/official_gopro.py                 # C = 10 and 40
"""
from __future__ import annotations

import os.path as osp
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, List, Tuple

if __name__ == "__main__":  # run as a script: import the repository's packages
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dassl.metrics import compute_accuracy  # noqa: E402
from trainers.gopro import VIEWS, GOPro, GOProCLIP, semantic_consistency  # noqa: E402
from trainers.losses import simclr_loss  # noqa: E402
from trainers.prompting import clip_logits  # noqa: E402
from trainers.views import augmix_view, wrapped_uint8_image  # noqa: E402

CONFIG = "vit_b16_official"
OPTS = ["TRAINER.GOPRO.TRUNCATE_TEXT", "False"]
STATS_EPS = 2.3e-8  # official σ = sqrt((Σ_tokens (h − μ)² + 2.3e-8) / tokens)


@contextmanager
def stacked_block_outputs(blocks: nn.Sequential) -> Iterator[List[torch.Tensor]]:
    """Collects every block's output (detached) while the body runs, as the official patched CLIP
    towers do; the list ends with the stacked tensor [L, ...]."""
    outputs: List[torch.Tensor] = []
    handles = [block.register_forward_hook(lambda module, args, out: outputs.append(out.detach()))
               for block in blocks]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
    outputs.append(torch.stack(outputs))


def image_branch(model: GOProCLIP, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """ẑ [B, E] and the primitives G [B, L, D_t] of one branch, through the patched vision tower."""
    visual = model.backbone.clip.visual
    with torch.no_grad(), stacked_block_outputs(visual.transformer.resblocks) as layers:
        z = visual(images.to(model.backbone.dtype)).float()
    h = layers[-1].float().transpose(1, 2)                                      # [L, B, T, D_v]
    mean = h.mean(dim=2)
    std = (((h - mean.unsqueeze(2)) ** 2).sum(dim=2) + STATS_EPS).div(h.shape[2]).sqrt()
    return F.normalize(z, dim=-1), model.primitives(mean.transpose(0, 1), std.transpose(0, 1))


def text_branch(model: GOProCLIP, contexts: torch.Tensor) -> torch.Tensor:
    """Class features [B, C, E] of per-image contexts [B, M, D_t]: one 77-token text call per image."""
    clip_model, learner = model.backbone.clip, model.prompter.prompt_learner
    if learner.length != model.backbone.context_length:
        raise ValueError(f"The official cost model needs full-length prompts: {' '.join(OPTS)}")
    features = []
    for ctx in contexts:
        x = learner.assemble(ctx).to(model.backbone.dtype) + clip_model.positional_embedding
        with stacked_block_outputs(clip_model.transformer.resblocks):  # stacked, then discarded (D18)
            x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)   # CLIP's LND layout
        x = clip_model.ln_final(x)[torch.arange(len(x)), learner.eot] @ clip_model.text_projection
        features.append(F.normalize(x.float(), dim=-1))
    return torch.stack(features)


class OfficialCostGOPro(GOPro):
    """GOPro in official mode whose training step and evaluation do the official code's work."""

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        options = self.method_options(cfg)
        if not options.OFFICIAL or options.TRUNCATE_TEXT:
            raise ValueError(f"The official cost model needs config {CONFIG} with {' '.join(OPTS)}")

    def augmix_branch(self, image: torch.Tensor) -> torch.Tensor:
        """B AugMix views of every image (B² runs, in image order), image 0's kept."""
        augmix = augmix_view(self.cfg.INPUT.SIZE[0], self.options.AUGMIX_SEVERITY)
        per_image = [[augmix(pil) for _ in range(len(image))] for pil in map(wrapped_uint8_image, image)]
        return torch.stack(per_image[0]).to(self.device)

    def official_forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, Tuple[torch.Tensor, torch.Tensor]]]:
        """The official CustomCLIP forward: logits [B, C] and, per branch, (ẑ, class features)."""
        model, branches = self.model, {}
        for view in VIEWS:
            if view == "orig":
                images = image
            elif view == "moco":
                images = self.official_views(image, ["moco"])[0]
            else:
                images = self.augmix_branch(image)
            z, g = image_branch(model, images)
            contexts = model.prompter.prompt_learner.ctx + model.prompter.rho_for(view)(g)
            branches[view] = (z, text_branch(model, contexts))
        z, text = branches["orig"]
        return clip_logits(model.backbone, model.image_embedding(z), text), branches

    def compute_loss(self, batch):
        """L = CE + mse(t, t1) + mse(t, t2) + 0.1 · SimCLR(simproj(ẑ), simproj(ẑ1)), as ``GOProLoss``."""
        image, label = self.parse_batch_train(batch)
        logits, branches = self.official_forward(image)
        (z, t), (z1, t1), (_, t2) = (branches[view] for view in VIEWS)
        prompter = self.model.prompter
        simproj = lambda x: prompter.contrastive_bn(prompter.image_projector(x))
        terms = {"loss_ce": F.cross_entropy(logits, label),
                 "loss_sem": semantic_consistency(t, t1, "mse") + semantic_consistency(t, t2, "mse"),
                 "loss_con": simclr_loss(simproj(z), simproj(z1), 0.1)}
        loss = terms["loss_ce"] + terms["loss_sem"] + 0.1 * terms["loss_con"]
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                      "acc": compute_accuracy(logits, label)[0].item()}

    def model_inference(self, input, *args, **kwargs):
        """Evaluation runs the whole training forward (all three branches) and keeps the logits."""
        return self.official_forward(input)[0]


def main(argv=None) -> None:
    """Step and evaluation time of our default GOPro and of this reference, and their ratios."""
    import argparse
    import json
    import os
    import tempfile

    import bench_prompts as bench

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed GOPro steps after one warm-up (reference: 1)")
    parser.add_argument("--test-batch", type=int, default=8)
    parser.add_argument("--out", default=osp.join(bench.BENCH, "out", "official_cost.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench.ARCHS["official-check"] = dict(bench.ARCHS["quick"], transformer_layers=args.text_layers)
    print(f"[official cost] {bench.machine_description('cpu')}; text layers {args.text_layers}, "
          f"batch {bench.BATCH_SIZE}, test batch {args.test_batch}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="official_cost_") as tmp:
        clip_path = bench.write_random_clip(osp.join(tmp, "clip.pt"), "official-check")
        for c in args.classes:
            root = bench.write_label_space(osp.join(tmp, f"classes{c}"), bench.read_classnames(c))
            for method in ("GOPro", bench.OFFICIAL_STYLE):
                spec = dict(arch="official-check", device="cpu", text_chunk=0, test_batch=args.test_batch,
                            eval_batches=1, steps=args.steps if method == "GOPro" else 1, clip_path=clip_path,
                            work_dir=osp.join(tmp, "work"), method=method, num_classes=c, root=root)
                torch.manual_seed(0)
                results[f"{method} C={c}"] = result = bench.run_method_case(spec)
                print(f"[official cost] {method} C={c}: step {result['step_ms']:.0f} ms, "
                      f"eval {result['eval_images_per_s']:.3g} images/s", flush=True)
    for c in args.classes:
        ours, official = results[f"GOPro C={c}"], results[f"{bench.OFFICIAL_STYLE} C={c}"]
        print(f"C={c}: official / ours: train step {official['step_ms'] / ours['step_ms']:.1f}x, "
              f"evaluation {ours['eval_images_per_s'] / official['eval_images_per_s']:.1f}x")
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(vars(args), results=results), f, indent=2)


if __name__ == "__main__":
    main()
