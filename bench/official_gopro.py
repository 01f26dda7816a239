"""The official GOPro cost model: GOPro with ``OFFICIAL True``, computed the way the official code
computes it (benchmark reference only). The D-numbers are the deviations of docs/DEVIATIONS.md.

It is our GOPro trainer, loss and model forward (``GOProCLIP.forward``) with the official code's
towers and views plugged in, so it gives the numbers of our official mode
(``tests/test_bench_official.py`` compares losses and logits) and does the official amount of
work:

* **three branches**, in training *and* at test (D12): the original batch, the MoCo-v3 view and
  the AugMix view, each with its own vision pass and its own prompts;
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
from typing import Iterator, List, Sequence, Tuple

if __name__ == "__main__":  # run as a script: import the repository's packages
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainers.gopro import GOPro, GOProCLIP  # noqa: E402
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


class OfficialCostGOProCLIP(GOProCLIP):
    """``GOProCLIP`` whose image and text passes are the official code's (its forward is ours)."""

    @torch.no_grad()
    def encode_views(self, images: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass of the patched vision tower per branch; ẑ and statistics of the views, one after another."""
        z_hat, mean, std = zip(*(self.image_branch(x) for x in images))
        return torch.cat(z_hat), torch.cat(mean), torch.cat(std)

    def image_branch(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ẑ [B, E] and the layer statistics [B, L, D_v] of one branch, from the stacked block outputs."""
        visual = self.backbone.clip.visual
        with stacked_block_outputs(visual.transformer.resblocks) as layers:
            z = visual(images.to(self.backbone.dtype)).float()
        h = layers[-1].float().transpose(1, 2)                                        # [L, B, T, D_v]
        mean = h.mean(dim=2)
        std = (((h - mean.unsqueeze(2)) ** 2).sum(dim=2) + STATS_EPS).div(h.shape[2]).sqrt()
        return F.normalize(z, dim=-1), mean.transpose(0, 1), std.transpose(0, 1)

    def encode_contexts(self, contexts: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Class features [N, C, E] of per-image contexts [N, M, D_t]: one 77-token text call per image."""
        clip_model, learner = self.backbone.clip, self.learnable.prompt_learner
        if learner.length != self.backbone.context_length:
            raise ValueError(f"The official cost model needs full-length prompts: {' '.join(OPTS)}")
        features = []
        for ctx in contexts:
            x = learner.assemble(ctx).to(self.backbone.dtype) + clip_model.positional_embedding
            with stacked_block_outputs(clip_model.transformer.resblocks):  # stacked, then discarded (D18)
                x = clip_model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)   # CLIP's LND layout
            x = clip_model.ln_final(x)[torch.arange(len(x)), learner.eot] @ clip_model.text_projection
            features.append(F.normalize(x.float(), dim=-1) if normalize else x.float())
        return torch.stack(features)


class OfficialCostGOPro(GOPro):
    """GOPro in official mode whose training step and evaluation do the official code's work: our
    step (views → ``GOProCLIP.forward`` → ``GOProLoss``) and evaluation (``TEST_BRANCHES all``: the
    same forward with every view) with the official towers and AugMix branch."""

    CLIP_MODEL = OfficialCostGOProCLIP

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        options = self.method_options(cfg)
        if not options.OFFICIAL or options.TRUNCATE_TEXT:
            raise ValueError(f"The official cost model needs config {CONFIG} with {' '.join(OPTS)}")

    def official_views(self, image: torch.Tensor, names: Sequence[str]) -> List[torch.Tensor]:
        """Our official views, except that AugMix makes the official B views of every image."""
        views = super().official_views(image, [name for name in names if name != "augmix"])
        return views + [self.augmix_branch(image)] if "augmix" in names else views

    def augmix_branch(self, image: torch.Tensor) -> torch.Tensor:
        """B AugMix views of every image (B² runs, in image order), image 0's kept."""
        augmix = augmix_view(self.cfg.INPUT.SIZE[0], self.options.AUGMIX_SEVERITY)
        per_image = [[augmix(pil) for _ in range(len(image))] for pil in map(wrapped_uint8_image, image)]
        return torch.stack(per_image[0]).to(self.device)


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
