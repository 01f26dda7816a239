"""The frozen CLIP backbone every trainer shares: the interface methods use, and its OpenAI implementation.

``ClipBackbone`` is the one interface between a method and CLIP: tokenizer, token embedding, the
text tower with injected prompts and EOT pooling, the image tower with prompts and per-block token
statistics, logit scale (and bias), precision policy, and the architecture facts a method sizes
its parameters by. No method reads the library model (``backbone.clip``) itself.
Two implementations, chosen by ``MODEL.BACKBONE.NAME`` in ``build_backbone``:

* ``ViT-B/16``, ``RN50`` ... : OpenAI's ``clip`` package (this module);
* ``open_clip:ARCH:TAG``: ``open_clip`` (``trainers/open_clip_backbone.py``, a subclass that only
  says where its towers differ).

Loading (OpenAI): ``MODEL.BACKBONE.NAME`` (RN50 ... ViT-L/14@336px) resolves to a local file first
(``MODEL.BACKBONE.PATH``, a file or a folder holding ``<official file name>``, then ``$CLIP_WEIGHTS_DIR/<file>``, then ``~/.cache/clip/<file>``) and
downloads through the CLIP package only when no local copy exists. JIT archives and plain state
dicts both load; offline with no file gives one error saying which file to put where.

Running: the towers are re-run from the public submodules of an *unmodified* ``clip.model.CLIP``
(no patching, no vendoring), which lets us
  * truncate text sequences after the longest end-of-text token, in buckets of similar length, and
    run a prefix shared by many prompts (SOS + one image's context) once (exact under the causal mask),
  * encode many prompts per call, in chunks, optionally with activation checkpointing,
  * inject deep prompts into either tower (MaPLe / IVLP / VPT),
  * read per-layer visual token statistics (GOPro / StyLIP) without storing the tokens.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as activation_checkpoint

import clip
from clip.model import build_model

# ``design_details`` for the modified CLIP packages that MaPLe-derived repositories (MaPLe, PromptSRC)
# ship in place of the PyPI one: every key their constructors read, set so that the model is plain
# CLIP (no prompt parameters, vanilla blocks); our trainers inject prompts themselves.
PLAIN_CLIP_DESIGN = dict(trainer="IVLP", vision_depth=0, language_depth=0, vision_ctx=0, language_ctx=0,
                         maple_length=0)

WEIGHTS_DIR_ENV = "CLIP_WEIGHTS_DIR"
DEFAULT_CACHE = os.path.expanduser("~/.cache/clip")
PRECISIONS = ("fp16", "bf16", "fp32", "amp")
# Set to 1 to run the towers in PREC's real dtype on a CPU too (the tests and ``bench/gpu_check.py
# --device cpu`` do, so that half-precision paths are exercised without a GPU).
HALF_ON_CPU_ENV = "GOPRO_HALF_ON_CPU"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def checkpoint_filename(name: str) -> str:
    """File name the official weights of ``name`` are published under, e.g. ``ViT-B-16.pt``."""
    return os.path.basename(clip.clip._MODELS[name])


def resolve_checkpoint(name: str, path: str = "") -> str:
    """Find the weights of backbone ``name`` on disk, downloading them only when none exist."""
    if path:
        path = os.path.expanduser(path)
        if os.path.isdir(path):  # a folder of weights files named like the official ones (the kit's)
            return weights_in_folder(path, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.BACKBONE.PATH={path!r} does not exist or is not a file.")
        return path
    if name not in clip.clip._MODELS:
        raise ValueError(
            f"Unknown CLIP backbone {name!r} (MODEL.BACKBONE.NAME / --backbone). Available: "
            f"{', '.join(clip.available_models())}; or set MODEL.BACKBONE.PATH to a checkpoint file."
        )
    filename = checkpoint_filename(name)
    candidates = [os.path.join(d, filename) for d in (os.environ.get(WEIGHTS_DIR_ENV), DEFAULT_CACHE) if d]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    try:
        return clip.clip._download(clip.clip._MODELS[name], os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_CACHE)
    except Exception as exc:  # offline, proxy, checksum ...
        raise FileNotFoundError(
            f"CLIP weights for {name} are not on disk and could not be downloaded ({exc.__class__.__name__}: "
            f"{exc}). Put the file {filename} (from {clip.clip._MODELS[name]}) into "
            f"${WEIGHTS_DIR_ENV} or {DEFAULT_CACHE}, or set MODEL.BACKBONE.PATH to its path."
        ) from exc


def weights_in_folder(folder: str, name: str) -> str:
    """The file of backbone ``name`` in ``folder`` (e.g. ``ViT-L-14.pt`` for ViT-L/14), so that one
    MODEL.BACKBONE.PATH serves runs of several backbones."""
    filename = checkpoint_filename(name) if name in clip.clip._MODELS else ""
    path = os.path.join(folder, filename)
    if not filename or not os.path.isfile(path):
        present = ", ".join(sorted(f for f in os.listdir(folder) if f.endswith(".pt"))) or "none"
        raise FileNotFoundError(
            f"MODEL.BACKBONE.PATH={folder!r} is a folder without the weights of {name!r} (MODEL.BACKBONE.NAME): "
            f"expected {filename or 'an official backbone name'} there; it holds {present}.")
    return path


def unsafe_file_message(path: str, exc: Exception) -> str:
    """Why a file that ``torch.load(weights_only=True)`` refused is not loaded, and how to get a
    good one. Never torch's own advice (``weights_only=False``): for a file found on disk that
    means running whatever code it holds."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    holds = f" It refers to the Python callable {found.group(1)}, which unpickling would call." if found else ""
    example = "ViT-B/16"
    return (f"{path} is not a safe CLIP weights file: neither a TorchScript CLIP archive nor a plain archive of "
            f"tensors, so it was not loaded.{holds} Use the official OpenAI file of your backbone (e.g. "
            f"{checkpoint_filename(example)} from {clip.clip._MODELS[example]}; MODEL.BACKBONE.NAME downloads it), "
            f"or re-save trusted weights as a state dict: torch.save(model.state_dict(), 'clip.pt').")


def load_clip_state_dict(path: str) -> dict:
    """Weights of a CLIP checkpoint: a TorchScript archive (official files) or a plain state dict."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
            return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        pass  # not a TorchScript archive
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise RuntimeError(unsafe_file_message(path, exc)) from None  # torch's text advises weights_only=False
    except Exception as exc:
        raise RuntimeError(f"Cannot read CLIP checkpoint {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or "token_embedding.weight" not in state:
        raise RuntimeError(f"{path} is not a CLIP checkpoint (no 'token_embedding.weight' in its state dict).")
    return state


def takes_design_details(builder) -> bool:
    """Whether ``builder`` is a MaPLe-style ``build_model(state_dict, design_details)`` rather than
    the vanilla ``build_model(state_dict)`` (read from its signature)."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    extra = [p for p in inspect.signature(builder).parameters.values() if p.kind in positional][1:]
    return any(p.name == "design_details" or p.default is inspect.Parameter.empty for p in extra)


def load_clip(name: str, path: str = "") -> nn.Module:
    """Build ``clip.model.CLIP`` (fp16 weights, as the official loader does) on the CPU, through
    whichever ``clip`` package is importable: PyPI's, or a client repository's modified one."""
    state_dict = dict(load_clip_state_dict(resolve_checkpoint(name, path)))
    if takes_design_details(build_model):
        return build_model(state_dict, dict(PLAIN_CLIP_DESIGN)).eval()
    return build_model(state_dict).eval()


# --------------------------------------------------------------------------------------------
# Running the towers
# --------------------------------------------------------------------------------------------
@dataclass
class ImageOutput:
    features: torch.Tensor                      # [B, E] image embedding (fp32, not normalised)
    token_mean: Optional[torch.Tensor] = None   # [B, L, D_v] per-layer token mean (fp32)
    token_std: Optional[torch.Tensor] = None    # [B, L, D_v] per-layer token std (fp32)


def attention(attn: nn.MultiheadAttention, x: torch.Tensor, causal: bool,
              past: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``nn.MultiheadAttention(x, x, x)`` for batch-first ``x`` through fused SDPA.

    Same math as CLIP's block with its additive causal mask (``-inf`` above the diagonal), but
    valid for any sequence length, which is what makes EOT truncation possible. ``past`` stacks the
    keys and values [2, n, heads, P, head_dim] of P earlier positions that ``x`` continues (a
    shared prompt prefix); under the causal mask every token of ``x`` sees all of them.
    """
    n, length, width = x.shape
    q, k, v = queries_keys_values(attn, x)
    if past is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        offset = past[0].shape[2]
        visible = torch.ones(length, offset + length, dtype=torch.bool, device=x.device).tril(offset)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible if causal else None)
    return attn.out_proj(out.transpose(1, 2).reshape(n, length, width))


def queries_keys_values(attn: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """q, k, v stacked as [3, n, heads, length, head_dim] for batch-first ``x``. A module that
    ``attn`` carries as ``qkv_adaptation`` (CLIP-LoRA's low-rank update) adds its output [.., 3 D]."""
    n, length, width = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    adaptation = getattr(attn, "qkv_adaptation", None)
    if adaptation is not None:
        qkv = qkv + adaptation(x).to(qkv.dtype)
    return qkv.view(n, length, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)


def run_block(block: nn.Module, x: torch.Tensor, causal: bool, past: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One CLIP ``ResidualAttentionBlock`` on batch-first tokens, built from its submodules.

    open_clip's block has the same submodules plus optional layer scales ``ls_1`` / ``ls_2``
    (``nn.Identity`` when its model has none); OpenAI's has none."""
    x = x + layer_scaled(block, "ls_1", attention(block.attn, block.ln_1(x), causal, past))
    return x + layer_scaled(block, "ls_2", block.mlp(block.ln_2(x)))


def layer_scaled(block: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    scale = getattr(block, name, None)
    return x if scale is None else scale(x)


def length_buckets(eot: torch.Tensor, chunk_size: int = 0, slack: float = 0.25) -> List[torch.Tensor]:
    """Indices of the sequences that run together when each call is cut at its own longest EOT.

    Sequences are sorted by EOT position and split where padding all of them to the longest EOT
    would add more than ``slack`` extra tokens (so short class names do not pay for the longest
    one), then into parts of at most ``chunk_size`` (> 0) sequences.
    """
    order = torch.argsort(eot, stable=True)
    lengths, counts = torch.unique(eot + 1, return_counts=True)  # ascending
    sizes, size, tokens = [], 0, 0
    for length, count in zip(lengths.tolist(), counts.tolist()):
        if size and length * (size + count) > (1 + slack) * (tokens + length * count):
            sizes.append(size)
            size, tokens = 0, 0
        size, tokens = size + count, tokens + length * count
    sizes.append(size)
    step = chunk_size if chunk_size > 0 else len(eot)
    return [part for bucket in order.split(sizes) for part in bucket.split(step)]


def replace_tokens(x: torch.Tensor, start: int, prompts: torch.Tensor) -> torch.Tensor:
    """Overwrite tokens ``start : start + n`` of every sequence with ``prompts`` [n, D] (not in place)."""
    n = prompts.shape[-2]
    prompts = prompts.to(x.dtype).expand(x.shape[0], -1, -1)
    end = x.shape[1] if start < 0 else start + n
    start = x.shape[1] + start if start < 0 else start
    return torch.cat([x[:, :start], prompts, x[:, end:]], dim=1)


def block_prompt(deep_prompts: Optional[Sequence[Optional[torch.Tensor]]], block: int) -> Optional[torch.Tensor]:
    """The prompts that replace tokens before block ``block`` (0-based): ``deep_prompts[block - 1]``,
    or None where there are none (block 0, blocks past the list, None entries)."""
    if deep_prompts is None or not 1 <= block <= len(deep_prompts):
        return None
    return deep_prompts[block - 1]


def deep_prompts_of(deep_prompts: Optional[Sequence[Optional[torch.Tensor]]], index: torch.Tensor):
    """The deep prompts of the sequences ``index`` of a call: per-sequence ones [N, n, D] are
    selected, shared ones [n, D] (and None entries) pass as they are."""
    if deep_prompts is None:
        return None
    return [p[index] if p is not None and p.dim() == 3 else p for p in deep_prompts]


def cast_weights(clip_model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """CLIP with its towers in ``dtype`` as the official loader makes fp16 CLIP: the weights of
    convolutions, linear layers, attention and the two output projections in ``dtype``; layer
    norms, embeddings and the logit scale in fp32. (CLIP's ``LayerNorm`` computes in fp32 from an
    fp32 copy of its input, so half-precision norm weights stop it: "mixed dtype" on a CPU.)"""
    clip_model = clip_model.float()
    for module in clip_model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.MultiheadAttention)):
            for param in module.parameters(recurse=False):
                param.data = param.data.to(dtype)
    for owner, name in ((clip_model, "text_projection"), (clip_model.visual, "proj")):
        param = getattr(owner, name, None)
        if isinstance(param, torch.Tensor):
            param.data = param.data.to(dtype)
    return clip_model


def precision_applies(device: torch.device) -> bool:
    """Whether the towers take ``PREC``'s dtype on ``device``: always on a GPU, on a CPU only with
    ``$GOPRO_HALF_ON_CPU=1``."""
    return device.type != "cpu" or os.environ.get(HALF_ON_CPU_ENV, "") == "1"


class ClipBackbone(nn.Module):
    """Frozen CLIP towers with the entry points prompt learners need (the backbone interface).

    This class runs OpenAI's ``clip.model.CLIP``; ``OpenClipBackbone`` runs open_clip's models
    through the same code and overrides only the hooks where open_clip differs (tokenizer, where
    the text tower lives, causal or not, text projection, image pooling, logit bias).

    ``precision``: ``fp16`` / ``bf16`` keep the towers in half precision on GPU (the official
    numerics); ``amp`` keeps fp32 weights under fp16 autocast; ``fp32`` is plain fp32. On a CPU the
    towers run in fp32 (half matmuls are slow there) unless ``$GOPRO_HALF_ON_CPU`` is 1, which
    applies the policy as on a GPU (``precision_applies``). Whatever the policy,
    inputs are cast to the tower dtype on entry and outputs come back in fp32, so learnable
    parameters, losses and statistics stay fp32.
    """

    library = "clip"  # which package built ``self.clip``, for logs and messages only

    def __init__(self, clip_model: nn.Module, precision: str = "fp32", device: torch.device | str = "cpu"):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"PREC must be one of {PRECISIONS}, got {precision!r}")
        device = torch.device(device)
        self.precision = precision
        self.autocast_dtype: Optional[torch.dtype] = None
        applies = precision_applies(device)
        if applies and precision in ("fp16", "bf16"):
            clip_model = cast_weights(clip_model, torch.float16 if precision == "fp16" else torch.bfloat16)
        else:
            clip_model = clip_model.float()
            if applies and precision == "amp":
                self.autocast_dtype = torch.float16
        self.clip = clip_model.to(device)
        self.clip.requires_grad_(False)
        self.clip.eval()

    # The frozen towers never leave eval mode (ResNet CLIP has BatchNorm).
    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    # ---- where the towers live (hooks an implementation overrides) ---------------------------
    @property
    def text_model(self) -> nn.Module:
        """The module holding ``token_embedding``, ``positional_embedding``, ``transformer``,
        ``ln_final`` and ``text_projection`` (OpenAI: the CLIP model itself)."""
        return self.clip

    @property
    def text_causal(self) -> bool:
        """Whether the text tower attends causally (OpenAI: always). Truncation after the longest
        EOT and shared-prefix runs are exact only then."""
        return True

    def project_text(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled @ self.text_model.text_projection

    def pool_image(self, x: torch.Tensor, num_image_tokens: int) -> torch.Tensor:
        """Image embedding [B, E] from the last block's tokens [B, L, D_v] (the first
        ``num_image_tokens`` are CLS + patches, prompts follow). OpenAI: ln_post(CLS) · proj."""
        visual = self.clip.visual
        return visual.ln_post(x[:, 0]) @ visual.proj

    # ---- the towers piece by piece (for methods that change the token sequence between blocks) --
    @property
    def text_blocks(self) -> Sequence[nn.Module]:
        return self.text_model.transformer.resblocks

    @property
    def vision_blocks(self) -> Sequence[nn.Module]:
        self.require_vit("Running the image tower block by block")
        return self.clip.visual.transformer.resblocks

    def text_input(self, prompts: torch.Tensor, length: int, offset: int = 0) -> torch.Tensor:
        """The first block's input [N, length, D_t] (tower dtype): prompt embeddings of positions
        ``offset..offset+length-1`` plus their positional embeddings."""
        positions = self.text_model.positional_embedding[offset:offset + length]
        return prompts[:, :length].to(self.dtype) + positions.to(self.dtype)

    def text_output(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Text features [N, E] from the last block's tokens: final layer norm, the EOT token, projection."""
        x = self.text_model.ln_final(x)
        return self.project_text(x[torch.arange(x.shape[0], device=x.device), eot])

    def image_input(self, images: torch.Tensor, shallow_prompts: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, int]:
        """The first vision block's input [B, L, D_v] (tower dtype) and the number of image tokens
        (CLS + patches) in it: patch embedding, CLS, positions, ``shallow_prompts`` [n, D_v] appended,
        ``ln_pre``."""
        visual = self.clip.visual
        x = visual.conv1(images.to(self.device, self.dtype))           # [B, D_v, g, g]
        x = x.flatten(2).transpose(1, 2)                                 # [B, g*g, D_v]
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        num_image_tokens = x.shape[1]
        if shallow_prompts is not None:
            x = torch.cat([x, shallow_prompts.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        return visual.ln_pre(x), num_image_tokens

    def image_token_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The image tower's final layer norm (``ln_post``) applied to tokens [B, K, D_v]."""
        return self.clip.visual.ln_post(x)

    # ---- facts about the loaded model ------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The dtype the towers compute in (their first text block's attention weights: ``cast_weights``
        keeps the embeddings and norms in fp32)."""
        return self.text_blocks[0].attn.in_proj_weight.dtype

    @property
    def device(self) -> torch.device:
        return self.text_model.token_embedding.weight.device

    @property
    def is_vit(self) -> bool:
        """Whether the image tower takes prompts and yields token statistics (a ViT of CLIP's form)."""
        return hasattr(self.clip.visual, "transformer")

    @property
    def text_width(self) -> int:
        return self.text_model.ln_final.weight.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.text_model.text_projection.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.text_model.token_embedding.weight.shape[0]

    @property
    def vision_width(self) -> int:
        self.require_vit("per-layer visual tokens")
        return self.clip.visual.conv1.out_channels

    @property
    def patch_size(self) -> int:
        self.require_vit("patch tokens")
        return self.clip.visual.conv1.kernel_size[0]

    @property
    def num_image_tokens(self) -> int:
        """CLS + patch tokens of one image (the rows of the visual positional embedding)."""
        self.require_vit("visual tokens")
        return self.clip.visual.positional_embedding.shape[0]

    @property
    def num_vision_layers(self) -> int:
        self.require_vit("per-layer visual tokens")
        return len(self.clip.visual.transformer.resblocks)

    @property
    def num_text_layers(self) -> int:
        return len(self.text_model.transformer.resblocks)

    @property
    def context_length(self) -> int:
        return self.text_model.positional_embedding.shape[0]

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp().float()

    @property
    def logit_bias(self) -> Optional[torch.Tensor]:
        """The learned logit bias of sigmoid-trained models (SigLIP-like); None for CLIP."""
        return None

    @property
    def speedups_exact(self) -> bool:
        """Whether EOT truncation and shared-prefix runs give the same features (causal towers)."""
        return self.text_causal

    def require_vit(self, what: str) -> None:
        if not self.is_vit:
            vits = [n for n in clip.available_models() if n.startswith("ViT")]
            raise ValueError(f"{what} need a ViT CLIP backbone; this one is a ResNet. Supported: {', '.join(vits)}")

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---- text ------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return clip.tokenize(list(texts), context_length=self.context_length).to(self.device)

    def bpe_tokens(self, text: str) -> List[int]:
        """BPE ids of ``text`` without SOS/EOT (to locate class-name tokens inside a prompt)."""
        return openai_bpe().encode(text)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The text tower's (frozen) token embedding, whichever library built it."""
        return self.text_model.token_embedding

    @torch.no_grad()
    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings [N, T, D_t] in fp32 (buffers for prompt assembly)."""
        return self.token_embedding(tokens.to(self.device)).float()

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor, chunk_size: int = 0) -> torch.Tensor:
        """Plain CLIP ``encode_text`` of token ids [N, T] → [N, E] (fp32), truncated and chunked."""
        return self.encode_text(self.embed_tokens(tokens), tokens.argmax(dim=-1), chunk_size=chunk_size)

    def encode_text(self, prompts: torch.Tensor, eot: torch.Tensor,
                    deep_prompts: Optional[Sequence[torch.Tensor]] = None, truncate: bool = True,
                    chunk_size: int = 0, checkpointing: bool = False,
                    shared_prefix: int = 0, group_size: int = 0) -> torch.Tensor:
        """Text features [N, E] (fp32) of prompt embeddings ``prompts`` [N, T, D_t].

        ``eot`` [N] holds the end-of-text position of every sequence. With ``truncate`` a call runs
        only the positions up to its longest EOT, and sequences of similar EOT run together
        (``length_buckets``): the causal mask makes later tokens irrelevant, so the features are
        the same up to floating-point reassociation.
        ``shared_prefix`` P > 0 declares that each run of ``group_size`` consecutive sequences (the
        C class prompts of one image, or all prompts of a class-shared context) has the same first
        P positions (SOS and context). Those run once per group and the rest of every sequence
        attends to their cached keys and values: exact for the same reason, the prefix never sees
        what follows it.
        Both tricks need the causal mask: on a tower without one they are switched off (and the
        log says so once), whatever the caller asks.
        ``deep_prompts[i]`` [n, D_t] replaces positions ``1..n`` before block ``i + 1`` (MaPLe);
        an entry may be None (that block's input is kept) or [N, n, D_t], one set per sequence
        (TCP's class-aware tokens; not with ``shared_prefix``, which they would break).
        ``chunk_size`` > 0 bounds memory by encoding at most that many sequences per call; with
        ``checkpointing`` each call's activations are recomputed in backward instead of stored.
        """
        n = prompts.shape[0]
        if n == 0:
            return prompts.new_zeros(0, self.embed_dim)
        if not self.speedups_exact and (truncate or shared_prefix):
            self._say_speedups_off()
            truncate, shared_prefix = False, 0
        eot = eot.to(prompts.device)
        past, group = None, None
        if shared_prefix > 0:
            group_size = group_size or n
            given = [p for p in deep_prompts or [] if p is not None]
            deep = max((p.shape[-2] for p in given), default=0)
            if any(p.dim() == 3 for p in given):
                raise ValueError("shared_prefix needs deep prompts shared by all sequences; per-sequence ones change the prefix")
            if n % group_size or int(eot.min()) < shared_prefix or deep >= shared_prefix:
                raise ValueError(f"shared_prefix={shared_prefix} needs groups of group_size={group_size} sequences "
                                 f"that end after the prefix and deep prompts inside it; got {n} sequences, "
                                 f"earliest EOT {int(eot.min())}, {deep} deep prompt tokens")
            past = self._prefix_keys_values(prompts[::group_size, :shared_prefix], deep_prompts)
            group = torch.arange(n, device=prompts.device) // group_size
            prompts, eot = prompts[:, shared_prefix:], eot - shared_prefix
        if truncate:
            batches = length_buckets(eot, chunk_size)
        else:
            batches = list(torch.arange(n, device=prompts.device).split(chunk_size if chunk_size > 0 else n))
        outputs = []
        for index in batches:
            args = (prompts[index], eot[index], None if group is None else group[index], past,
                    deep_prompts_of(deep_prompts, index), truncate)
            if checkpointing and torch.is_grad_enabled():
                outputs.append(activation_checkpoint(self._text_tower, *args, use_reentrant=False))
            else:
                outputs.append(self._text_tower(*args))
        return torch.cat(outputs)[torch.argsort(torch.cat(batches))]

    _said_speedups_off = False

    def _say_speedups_off(self) -> None:
        if not self._said_speedups_off:
            print(f"Text tower of this {self.library} model is not causal: EOT truncation and shared-prefix runs "
                  f"are off (they are exact only under a causal mask); every prompt runs all "
                  f"{self.context_length} positions")
            self._said_speedups_off = True

    def _prefix_keys_values(self, prefix: torch.Tensor, deep_prompts) -> List[torch.Tensor]:
        """Per block, the keys and values [2, G, heads, P, head_dim] of the shared positions 0..P-1."""
        length = prefix.shape[1]
        cache = []
        with self.autocast():
            x = self.text_input(prefix, length)
            for i, block in enumerate(self.text_blocks):
                if block_prompt(deep_prompts, i) is not None:
                    x = replace_tokens(x, 1, deep_prompts[i - 1])
                cache.append(queries_keys_values(block.attn, block.ln_1(x))[1:])
                x = run_block(block, x, causal=True)
        return cache

    def _text_tower(self, prompts: torch.Tensor, eot: torch.Tensor, group: Optional[torch.Tensor],
                    past: Optional[List[torch.Tensor]], deep_prompts: Optional[Sequence[torch.Tensor]],
                    truncate: bool) -> torch.Tensor:
        """Features of sequences continuing the cached prefix ``past[block][:, group]`` (positions
        P.., and ``eot`` counted from P), or of whole sequences without ``past``."""
        causal = self.text_causal
        offset = 0 if past is None else past[0].shape[-2]
        length = int(eot.max()) + 1 if truncate else prompts.shape[1]
        with self.autocast():
            x = self.text_input(prompts, length, offset)
            for i, block in enumerate(self.text_blocks):
                if past is None and block_prompt(deep_prompts, i) is not None:
                    x = replace_tokens(x, 1, deep_prompts[i - 1])  # with a prefix they live in it
                x = run_block(block, x, causal=causal, past=None if past is None else past[i][:, group])
            x = self.text_output(x, eot)
        return x.float()

    # ---- image -----------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, shallow_prompts: Optional[torch.Tensor] = None,
                     deep_prompts: Optional[Sequence[torch.Tensor]] = None, with_stats: bool = False,
                     stats_tokens: str = "all", stats_eps: float = 1e-8) -> ImageOutput:
        """Image features, optionally with prompts and per-layer token statistics.

        ``shallow_prompts`` [n, D_v] are appended after the patch tokens before ``ln_pre``;
        ``deep_prompts[i]`` [n, D_v] overwrite the last n tokens before block ``i + 1`` (MaPLe).
        With ``with_stats`` the mean and std over the tokens of every block output are computed on
        the fly in fp32 (``stats_tokens``: ``all`` = CLS + patches, ``patch`` = patches only;
        prompt tokens never count): std = sqrt(biased variance + ``stats_eps``).
        """
        if not self.is_vit:
            if shallow_prompts is not None or deep_prompts is not None or with_stats:
                self.require_vit("Visual prompts and per-layer token statistics")
            with self.autocast():
                return ImageOutput(self.clip.encode_image(images.to(self.device, self.dtype)).float())
        if stats_tokens not in ("all", "patch"):
            raise ValueError(f"stats_tokens must be 'all' or 'patch', got {stats_tokens!r}")
        with self.autocast():
            x, num_image_tokens = self.image_input(images, shallow_prompts)
            first = 1 if stats_tokens == "patch" else 0
            means, stds = [], []
            for i, block in enumerate(self.vision_blocks):
                if deep_prompts is not None and 1 <= i <= len(deep_prompts):
                    x = replace_tokens(x, -deep_prompts[i - 1].shape[-2], deep_prompts[i - 1])
                x = run_block(block, x, causal=False)
                if with_stats:
                    tokens = x[:, first:num_image_tokens].float()
                    var, mean = torch.var_mean(tokens, dim=1, unbiased=False)
                    means.append(mean)
                    stds.append(torch.sqrt(var + stats_eps))
            features = self.pool_image(x, num_image_tokens)
        if not with_stats:
            return ImageOutput(features.float())
        return ImageOutput(features.float(), torch.stack(means, 1), torch.stack(stds, 1))


@functools.lru_cache(maxsize=1)
def openai_bpe():
    """The clip package's BPE tokenizer (built once: it reads the 49k-merge vocabulary)."""
    from clip.simple_tokenizer import SimpleTokenizer

    return SimpleTokenizer()


OPEN_CLIP_PREFIX = "open_clip:"


def build_backbone(cfg, precision: str, device: torch.device | str) -> ClipBackbone:
    """The shared frozen backbone from ``cfg.MODEL.BACKBONE`` (NAME, optional PATH): OpenAI's
    ``clip`` for its model names, open_clip for ``open_clip:ARCH:TAG``."""
    backbone_cfg = cfg.MODEL.BACKBONE
    name, path = backbone_cfg.NAME, backbone_cfg.get("PATH", "")
    if name.startswith(OPEN_CLIP_PREFIX):
        from .open_clip_backbone import build_open_clip_backbone  # imports open_clip only when asked

        config = backbone_cfg.get("OPEN_CLIP_CONFIG", "")
        print(f"Loading open_clip (backbone: {name}{', file: ' + path if path else ''}"
              f"{', model config: ' + config if config else ''})")
        return build_open_clip_backbone(name, path, config, precision, device)
    print(f"Loading CLIP (backbone: {name}{', file: ' + path if path else ''})")
    return ClipBackbone(load_clip(name, path), precision=precision, device=device)
