"""The open_clip implementation of the backbone interface (``MODEL.BACKBONE.NAME open_clip:ARCH:TAG``).

open_clip's ``encode_text`` takes token ids only, so a prompt learner cannot inject embeddings
through it. Its text and vision transformers, however, are built from the same public submodules
as OpenAI's (``token_embedding``, ``positional_embedding``, ``transformer.resblocks`` of
``ln_1 / attn / ln_2 / mlp`` blocks, ``ln_final``, ``text_projection``; ``conv1``,
``class_embedding``, ``ln_pre``, ``ln_post``, ``proj``), so ``ClipBackbone`` re-runs them from an
*unmodified* open_clip model and this subclass only states where open_clip differs:

* blocks are batch-first and may carry layer scales (``ls_1`` / ``ls_2``, handled by ``run_block``);
  the activation (GELU or QuickGELU) lives inside ``mlp`` and comes with the model config;
* the text tower may sit in ``model.text`` (``CustomTextCLIP``) and may be bidirectional
  (``no_causal_mask``): then EOT truncation and shared-prefix runs, exact only under a causal mask,
  are switched off (``ClipBackbone.encode_text`` logs it);
* the text projection may be an ``nn.Linear`` (with bias); the image embedding may be pooled from
  the CLS token or the patch mean, with ``ln_post`` before or after pooling;
* a model may have a learned logit bias (sigmoid-trained models).

Supported: models whose towers are open_clip's own ``VisionTransformer`` (vision prompts, token
statistics) and text transformer with its built-in BPE tokenizer: the OpenAI, LAION, DataComp,
MetaCLIP and DFN families, B/32 to H/14 and larger. Image towers of other kinds (ResNets, timm
towers such as EVA's, attention-pooled CoCa towers) run only whole, like OpenAI's ResNets:
text-side methods work, visual prompts and token statistics are refused with a message. Refused at
load, with a message: models that need a tokenizer from a hub (SigLIP, MobileCLIP ...), HF text
towers, text towers that pool other than at the end-of-text token or append a class token (CoCa),
and custom attention blocks (qk-norm, scaled cosine attention).

Loading: ``TAG`` is one of open_clip's pretrained tags for ``ARCH`` (downloaded by open_clip when
online) unless ``MODEL.BACKBONE.PATH`` names a local weights file. Tag ``openai`` reads OpenAI-format
weights (a TorchScript archive or a state dict, through the same safe reader as the ``clip``
backbone) and builds the model from them with open_clip's own OpenAI builder, as open_clip does for
that tag. ``MODEL.BACKBONE.OPEN_CLIP_CONFIG`` registers a local model config JSON (a file or a
folder of them) for architectures open_clip does not ship (the kit's tiny model).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
import torch.nn as nn

import open_clip
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from .clip_backbone import OPEN_CLIP_PREFIX, ClipBackbone, load_clip_state_dict

TEXT_POOLS_AT_EOT = ("argmax", "eos")  # with the built-in BPE tokenizer both are the EOT position


def parse_open_clip_name(name: str) -> Tuple[str, str]:
    """``open_clip:ARCH:TAG`` -> (ARCH, TAG)."""
    parts = name[len(OPEN_CLIP_PREFIX):].split(":") if name.startswith(OPEN_CLIP_PREFIX) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"MODEL.BACKBONE.NAME {name!r}: write open_clip backbones as open_clip:ARCH:TAG, e.g. "
                         f"open_clip:ViT-B-16:laion2b_s34b_b88k (python -c 'import open_clip; "
                         f"print(open_clip.list_pretrained())' lists them)")
    return parts[0], parts[1]


def model_config(arch: str, config_path: str = "") -> dict:
    """open_clip's config of ``arch`` (after registering ``config_path``), refused when we cannot run it."""
    if config_path:
        config_path = os.path.expanduser(config_path)
        if not os.path.exists(config_path):
            raise FileNotFoundError(f"MODEL.BACKBONE.OPEN_CLIP_CONFIG={config_path!r} does not exist: give an open_clip "
                                    f"model config JSON (or a folder of them) named <ARCH>.json")
        open_clip.add_model_config(config_path)
    config = open_clip.get_model_config(arch)
    if config is None:
        raise ValueError(f"open_clip has no model config {arch!r} (MODEL.BACKBONE.NAME open_clip:{arch}:TAG). Known: "
                         f"{', '.join(open_clip.list_models())}; or set MODEL.BACKBONE.OPEN_CLIP_CONFIG to a "
                         f"local {arch}.json")
    refuse_unsupported(arch, config)
    return config


def refuse_unsupported(arch: str, config: dict) -> None:
    text = config.get("text_cfg", {})
    why = None
    if text.get("hf_tokenizer_name") or text.get("hf_model_name"):
        why = (f"its tokenizer (or text tower) comes from the Hugging Face hub "
               f"({text.get('hf_tokenizer_name') or text.get('hf_model_name')}), not open_clip's built-in BPE")
    elif text.get("pool_type", "argmax") not in TEXT_POOLS_AT_EOT:
        why = f"its text tower pools at {text.get('pool_type')!r}, not at the end-of-text token prompts are read at"
    elif text.get("embed_cls") or "multimodal_cfg" in config:
        why = "its text tower appends a class token (CoCa)"
    elif any(text.get(k) for k in ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn",
                                    "scale_fc")) or text.get("block_type") == "custom":
        why = "its text blocks are open_clip's custom attention blocks"
    if why:
        raise ValueError(f"open_clip model {arch} is not supported: {why}. Supported: models with open_clip's own "
                         f"text transformer and BPE tokenizer (OpenAI, LAION, DataComp, MetaCLIP, DFN families; "
                         f"see README, 'Backbones').")


def load_open_clip(name: str, path: str = "", config_path: str = "") -> nn.Module:
    """Build the unmodified open_clip model of ``open_clip:ARCH:TAG`` on the CPU in fp32.

    open_clip's own random initialisation of the model (overwritten by the weights) does not touch
    the caller's generator: the backbone replays the draws of an OpenAI CLIP of its shapes instead
    (``build_open_clip_backbone``), so a seed starts every method from the same prompts whichever
    library loads the weights."""
    arch, tag = parse_open_clip_name(name)
    model_config(arch, config_path)
    if path:
        path = os.path.expanduser(path)
        if os.path.isdir(path):  # a folder of weights files named by architecture (``ViT-B-16.pt``, the kit's)
            folder, path = path, os.path.join(path, f"{arch}.pt")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"MODEL.BACKBONE.PATH={folder!r} is a folder without {arch}.pt, the weights "
                                        f"of {name!r}: put the file there or set MODEL.BACKBONE.PATH to it.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.BACKBONE.PATH={path!r} does not exist or is not a file.")
    with torch.random.fork_rng(devices=[]):
        if tag == "openai":
            return openai_format_model(arch, path)
        # the activation a tag was trained with (open_clip itself only warns on a mismatch)
        quick_gelu = bool((open_clip.get_pretrained_cfg(arch, tag) or {}).get("quick_gelu", False))
        if path:
            return open_clip.create_model(arch, pretrained=path, force_quick_gelu=quick_gelu).eval()
        if not open_clip.get_pretrained_cfg(arch, tag):
            raise ValueError(f"open_clip has no pretrained tag {tag!r} for {arch} (known: "
                             f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}); give the "
                             f"weights file with MODEL.BACKBONE.PATH")
        try:
            return open_clip.create_model(arch, pretrained=tag, force_quick_gelu=quick_gelu).eval()
        except Exception as exc:  # offline, proxy, hub error ...
            source = open_clip.get_pretrained_cfg(arch, tag)
            where = source.get("hf_hub") or source.get("url") or "open_clip's pretrained list"
            raise FileNotFoundError(
                f"open_clip weights {arch}:{tag} are not cached and could not be downloaded "
                f"({exc.__class__.__name__}: {exc}). Download them where you are online (from {where}; open_clip "
                f"caches them under ~/.cache/huggingface or $HF_HOME), or put the file on this machine and set "
                f"MODEL.BACKBONE.PATH to it.") from exc


def openai_format_model(arch: str, path: str) -> nn.Module:
    """open_clip's model of OpenAI-format weights (tag ``openai``): its ``build_model_from_openai_state_dict``,
    which derives the architecture from the weights (QuickGELU), as its own ``openai`` loader does."""
    if not path:
        try:
            return open_clip.create_model(arch, pretrained="openai").eval().float()
        except Exception as exc:
            raise FileNotFoundError(
                f"OpenAI weights for open_clip:{arch}:openai are not cached and could not be downloaded "
                f"({exc.__class__.__name__}: {exc}). Set MODEL.BACKBONE.PATH to the official OpenAI file "
                f"(e.g. ViT-B-16.pt, as for MODEL.BACKBONE.NAME ViT-B/16).") from exc
    state_dict = dict(load_clip_state_dict(path))
    return open_clip.model.build_model_from_openai_state_dict(state_dict, cast_dtype=None).eval().float()


class OpenClipBackbone(ClipBackbone):
    """``ClipBackbone`` over an open_clip ``CLIP`` / ``CustomTextCLIP``: the hooks where it differs."""

    library = "open_clip"

    def __init__(self, clip_model: nn.Module, arch: str, precision: str = "fp32", device: torch.device | str = "cpu"):
        super().__init__(clip_model, precision, device)
        self.arch = arch
        self._tokenizer = open_clip.get_tokenizer(arch)  # the built-in BPE (hub tokenizers are refused at load)
        for block in self.text_model.transformer.resblocks:
            if not isinstance(block, ResidualAttentionBlock):
                raise ValueError(f"open_clip model {arch} has {type(block).__name__} text blocks; only open_clip's "
                                 f"ResidualAttentionBlock is supported")

    @property
    def text_model(self) -> nn.Module:
        return getattr(self.clip, "text", self.clip)

    @property
    def text_causal(self) -> bool:
        return getattr(self.text_model, "attn_mask", None) is not None

    @property
    def embed_dim(self) -> int:
        projection = self.text_model.text_projection
        return projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1]

    def project_text(self, pooled: torch.Tensor) -> torch.Tensor:
        projection = self.text_model.text_projection
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    @property
    def is_vit(self) -> bool:
        visual = self.clip.visual
        return (isinstance(visual, VisionTransformer) and visual.attn_pool is None
                and all(isinstance(b, ResidualAttentionBlock) for b in visual.transformer.resblocks))

    def require_vit(self, what: str) -> None:
        if not self.is_vit:
            raise ValueError(f"{what} need an open_clip VisionTransformer image tower with plain blocks and CLS or mean "
                             f"pooling; {self.arch} has a {type(self.clip.visual).__name__} "
                             f"(ResNets, timm towers such as EVA's and attention-pooled towers run only whole). "
                             f"Use e.g. open_clip:ViT-B-16:laion2b_s34b_b88k")

    def pool_image(self, x: torch.Tensor, num_image_tokens: int) -> torch.Tensor:
        """open_clip's ``_global_pool``: CLS token or the mean of the patch tokens (prompts left
        out), with ``ln_post`` before pooling or, for ``final_ln_after_pool``, after."""
        visual = self.clip.visual
        if visual.pool_type == "avg":
            pooled = x[:, 1:num_image_tokens]
            pooled = visual.ln_post(pooled.mean(dim=1)) if visual.final_ln_after_pool else visual.ln_post(pooled).mean(dim=1)
        else:
            pooled = visual.ln_post(x[:, 0])  # LayerNorm is per token: before or after pooling is the same
        return pooled if visual.proj is None else pooled @ visual.proj

    @property
    def logit_bias(self) -> Optional[torch.Tensor]:
        bias = getattr(self.clip, "logit_bias", None)
        return None if bias is None else bias.float()

    def tokenize(self, texts):
        return self._tokenizer(list(texts), context_length=self.context_length).to(self.device)

    def bpe_tokens(self, text: str):
        return self._tokenizer.encode(text)


def build_open_clip_backbone(name: str, path: str, config_path: str, precision: str,
                             device: torch.device | str) -> OpenClipBackbone:
    """The open_clip backbone, leaving the global generator where building OpenAI's CLIP of the same
    shapes leaves it (see ``load_open_clip``)."""
    from .upstream_init import replay_clip_init

    arch, _ = parse_open_clip_name(name)
    backbone = OpenClipBackbone(load_open_clip(name, path, config_path), arch, precision, device)
    if backbone.is_vit:
        replay_clip_init(backbone)
    return backbone
