"""The open_clip backbone: the same weights through ``clip`` and open_clip give every registered
method the same logits and gradients; open_clip's own architectures (layer scales, GELU, several
heads, non-causal text, mean pooling) run through the interface as open_clip runs them; what we
cannot run is refused with a message."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import open_clip
from conftest import REPO, make_method_trainer, script_env
from trainers.frozen_features import FrozenFeatureTrainer
from numerics import assert_close, assert_differs
from runs.methods import METHODS, REPORTED_METHODS
from tools.kit.build import OPEN_CLIP_BACKBONE
from tools.kit.make_tiny_clip import tiny_open_clip_config
from trainers.clip_backbone import ClipBackbone, load_clip
from trainers.open_clip_backbone import (OpenClipBackbone, build_open_clip_backbone, load_open_clip,
                                         parse_open_clip_name)

OPENAI_WEIGHTS_THROUGH_OPEN_CLIP = "open_clip:ViT-B-16:openai"
PROMPTS = ["a photo of a dog.", "a photo of a golden retriever, a type of pet.", "x"]


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def methods_in_checkout():
    return [m for m in METHODS.values() if m.in_checkout()]


# ---- the same OpenAI weights through both libraries ----------------------------------------------
@pytest.fixture(scope="module")
def both_libraries(kit):
    torch.manual_seed(0)
    openai = ClipBackbone(load_clip("ViT-B/16", str(kit.clip_path)))
    openai_rng = torch.get_rng_state()
    torch.manual_seed(0)
    through_open_clip = build_open_clip_backbone(OPENAI_WEIGHTS_THROUGH_OPEN_CLIP, str(kit.clip_path), "", "fp32", "cpu")
    return openai, through_open_clip, openai_rng, torch.get_rng_state()


def test_loading_leaves_the_generator_where_building_openai_clip_leaves_it(both_libraries):
    """So one seed draws the same initial prompts whichever library loads the weights."""
    _, _, openai_rng, open_clip_rng = both_libraries
    assert torch.equal(openai_rng, open_clip_rng)


def test_the_interface_gives_the_same_tokens_and_features_through_both_libraries(both_libraries):
    openai, through_open_clip = both_libraries[:2]
    assert through_open_clip.library == "open_clip" and type(through_open_clip.clip).__module__.startswith("open_clip")
    tokens = openai.tokenize(PROMPTS)
    assert torch.equal(through_open_clip.tokenize(PROMPTS), tokens)
    assert through_open_clip.bpe_tokens("golden retriever") == openai.bpe_tokens("golden retriever")
    for fact in ("text_width", "embed_dim", "vision_width", "num_vision_layers", "num_text_layers", "context_length",
                 "num_image_tokens", "patch_size", "vocab_size", "is_vit", "text_causal"):
        assert getattr(through_open_clip, fact) == getattr(openai, fact), fact
    assert_close(through_open_clip.encode_tokens(tokens), openai.encode_tokens(tokens), what="text features")
    out_a = openai.encode_image(images(), with_stats=True)
    out_b = through_open_clip.encode_image(images(), with_stats=True)
    for field in ("features", "token_mean", "token_std"):
        assert_close(getattr(out_b, field), getattr(out_a, field), what=f"image {field}")


def one_training_step(trainer, batch):
    torch.manual_seed(1)  # whatever a step draws (views, dropout), both trainers draw alike
    trainer.set_model_mode("train")
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 2  # not the last batch: no lr step
    summary = trainer.forward_backward(batch)
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return summary["loss"], grads


@pytest.mark.parametrize("method", methods_in_checkout(), ids=lambda m: m.key)
def test_every_method_gets_equal_logits_and_gradients_through_both_libraries(kit, tmp_path, method, request):
    """The registry, iterated: a method added later is covered without touching this test."""
    built = {}
    for library, name in (("clip", "ViT-B/16"), ("open_clip", OPENAI_WEIGHTS_THROUGH_OPEN_CLIP)):
        built[library] = make_method_trainer(kit, tmp_path / library, method, "MODEL.BACKBONE.NAME", name,
                                             request=request)
    openai, through_open_clip = built["clip"], built["open_clip"]
    assert isinstance(through_open_clip.backbone, OpenClipBackbone)
    assert not isinstance(openai.backbone, OpenClipBackbone)
    if isinstance(openai, FrozenFeatureTrainer):  # fitted on frozen features: the fit is its training
        for trainer in (openai, through_open_clip):
            trainer.fit_head()
    elif not method.zero_shot:
        batch = next(iter(openai.train_loader_x))
        loss_a, grads_a = one_training_step(openai, batch)
        loss_b, grads_b = one_training_step(through_open_clip, batch)
        assert_close(torch.tensor(loss_b), torch.tensor(loss_a), what=f"{method.key} loss")
        assert grads_a and grads_a.keys() == grads_b.keys()
        for name, grad in grads_a.items():
            assert_close(grads_b[name], grad, what=f"{method.key} gradient of {name}")
    for trainer in (openai, through_open_clip):
        trainer.set_model_mode("eval")
    with torch.no_grad():
        logits_a = openai.model_inference(images().to(openai.device))
        logits_b = through_open_clip.model_inference(images().to(through_open_clip.device))
    assert_close(logits_b, logits_a, what=f"{method.key} evaluation logits")


# ---- open_clip's own architectures ----------------------------------------------------------------
def open_clip_model(tmp_path, name: str, text: dict = None, vision: dict = None, seed: int = 0):
    """A random tiny open_clip model of the kit's architecture with ``text`` / ``vision`` config changes."""
    config = tiny_open_clip_config()
    config["text_cfg"].update(text or {})
    config["vision_cfg"].update(vision or {})
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    weights = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), weights)
    return build_open_clip_backbone(f"open_clip:{name}:local", str(weights), str(path), "fp32", "cpu")


@pytest.mark.parametrize("name, text, vision", [
    ("tiny-kit-arch", {}, {}),
    ("tiny-mean-pooled", {}, {"pool_type": "avg"}),
    ("tiny-mean-pooled-ln-after", {}, {"pool_type": "avg", "final_ln_after_pool": True}),
    ("tiny-no-ln-pre", {"proj_bias": True}, {"no_ln_pre": True}),
    ("tiny-bidirectional", {"no_causal_mask": True}, {}),
])
def test_features_equal_open_clips_own_encoders(tmp_path, name, text, vision):
    """Re-running the towers from their submodules reproduces open_clip's encode_text / encode_image
    on architectures OpenAI's CLIP does not have."""
    backbone = open_clip_model(tmp_path, name, text, vision)
    tokens = backbone.tokenize(PROMPTS)
    with torch.no_grad():
        assert_close(backbone.encode_tokens(tokens), backbone.clip.encode_text(tokens), what=f"{name} text")
        assert_close(backbone.encode_image(images()).features, backbone.clip.encode_image(images()),
                     what=f"{name} image")


def test_a_bidirectional_text_tower_switches_the_speed_tricks_off_and_says_so(tmp_path, capsys):
    backbone = open_clip_model(tmp_path, "tiny-bidirectional-tricks", {"no_causal_mask": True})
    assert not backbone.text_causal and not backbone.speedups_exact
    tokens = backbone.tokenize(PROMPTS[:2] * 2)
    embedded = backbone.embed_tokens(tokens)
    with torch.no_grad():
        asked = backbone.encode_text(embedded, tokens.argmax(-1), truncate=True, shared_prefix=2, group_size=2)
        plain = backbone.encode_text(embedded, tokens.argmax(-1), truncate=False)
    assert_close(asked, plain, what="features with the tricks asked for")
    assert_close(asked, backbone.clip.encode_text(tokens), what="open_clip's own features")
    assert capsys.readouterr().out.count("is not causal") == 1
    # ... which matters: cut after the longest EOT, a bidirectional tower gives other features
    with torch.no_grad():
        cut = backbone._text_tower(embedded, tokens.argmax(-1), None, None, None, truncate=True)
    assert_differs(cut, plain, what="a bidirectional tower cut after the EOT")


def test_layer_scales_and_several_heads_take_effect(tmp_path):
    """The kit's architecture differs from OpenAI's where it should: dropping the layer scales or
    running one head changes the features (so the equality above is not vacuous)."""
    backbone = open_clip_model(tmp_path, "tiny-scaled")
    tokens = backbone.tokenize(PROMPTS)
    with torch.no_grad():
        reference = backbone.encode_tokens(tokens)
        for block in backbone.text_model.transformer.resblocks:
            block.ls_1.gamma.mul_(2)
        assert_differs(backbone.encode_tokens(tokens), reference, what="doubled layer scales")


def test_logit_bias_reaches_the_logits(tmp_path, kit):
    from trainers.models import clip_logits

    backbone = open_clip_model(tmp_path, "tiny-biased")
    features = torch.nn.functional.normalize(torch.randn(2, backbone.embed_dim), dim=-1)
    unbiased = clip_logits(backbone, features, features)
    backbone.clip.logit_bias = torch.nn.Parameter(torch.tensor([-3.0]), requires_grad=False)
    assert_close(clip_logits(backbone, features, features), unbiased - 3.0, what="biased logits")


# ---- names, files and refusals ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["open_clip:ViT-B-16", "open_clip:ViT-B-16:", "open_clip::laion2b_s34b_b88k",
                                  "open_clip:a:b:c"])
def test_malformed_names_show_the_form(name):
    with pytest.raises(ValueError, match="open_clip:ARCH:TAG"):
        parse_open_clip_name(name)


def test_unknown_architecture_and_tag_are_named():
    with pytest.raises(ValueError, match="no model config 'ViT-Q-99'.*OPEN_CLIP_CONFIG"):
        load_open_clip("open_clip:ViT-Q-99:laion")
    with pytest.raises(ValueError, match="no pretrained tag 'nope' for ViT-B-16.*laion2b_s34b_b88k"):
        load_open_clip("open_clip:ViT-B-16:nope")


def test_offline_download_says_what_to_put_where(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(FileNotFoundError, match="laion2b_s34b_b88k.*MODEL.BACKBONE.PATH"):
        load_open_clip("open_clip:ViT-B-16:laion2b_s34b_b88k")


@pytest.mark.parametrize("arch, why", [
    ("ViT-B-16-SigLIP", "its tokenizer .* comes from the Hugging Face hub"),
    ("coca_ViT-B-32", "its text tower appends a class token"),
])
def test_models_we_cannot_run_are_refused_at_load(arch, why):
    with pytest.raises(ValueError, match=f"{arch} is not supported: {why}"):
        load_open_clip(f"open_clip:{arch}:anything")


def test_image_towers_without_tokens_refuse_visual_prompts_but_run_whole(tmp_path):
    backbone = open_clip_model(tmp_path, "tiny-attn-pooled", vision={"attentional_pool": True,
                                                                     "attn_pooler_heads": 2})
    assert not backbone.is_vit
    with torch.no_grad():
        assert_close(backbone.encode_image(images()).features, backbone.clip.encode_image(images()), what="whole tower")
    with pytest.raises(ValueError, match="VisionTransformer image tower .* attention-pooled"):
        backbone.encode_image(images(), with_stats=True)


def test_the_kits_open_clip_model_is_open_clips_own_architecture(kit):
    backbone = build_open_clip_backbone(OPEN_CLIP_BACKBONE, str(kit.open_clip_weights), str(kit.open_clip_config),
                                        "fp32", "cpu")
    block = backbone.text_model.transformer.resblocks[0]
    assert block.attn.num_heads == 2 and type(block.mlp.gelu) is torch.nn.GELU
    assert isinstance(block.ls_1, open_clip.transformer.LayerScale)


# ---- through the scripts: layout and report -------------------------------------------------------
@pytest.mark.parametrize("name, folder", [("ViT-L/14@336px", "vit_l_14_336px"),
                                          ("open_clip:ViT-B-16:laion2b_s34b_b88k", "open_clip_vit_b_16_laion2b_s34b_b88k")])
def test_runs_on_another_backbone_get_their_own_tree(tmp_path, name, folder):
    from runs.layout import Layout, backbone_folder

    assert backbone_folder(name) == folder
    own, other = Layout(tmp_path), Layout(tmp_path, backbone=name)
    assert Layout(tmp_path, backbone="ViT-B/16").b2n_dir("train_base", "dtd", "CoOp", "c", 1) == \
        own.b2n_dir("train_base", "dtd", "CoOp", "c", 1)
    assert other.b2n_dir("train_base", "dtd", "CoOp", "c", 1) == \
        tmp_path / "backbone" / folder / "base2new/train_base/dtd/shots_16/CoOp/c/seed1"
    assert other.sub("ablation", "ce").zeroshot_dir("new", "dtd") == \
        tmp_path / "ablation/ce/backbone" / folder / "zsclip/new/dtd"
    assert other.fewshot_dir("dtd", 4, "CoOp", "c", 1) == tmp_path / "backbone" / folder / "fewshot/dtd/shots_4/CoOp/c/seed1"
    assert other.msdg_dir("pacs", "sketch", "CoOp", "c", 1) == tmp_path / "backbone" / folder / "msdg/pacs/sketch/CoOp/c/seed1"
    other.record_backbone()
    assert own.backbones() == ["", name]


def run_table1(methods, env: dict) -> None:
    """``python -m runs.jobs table1`` for ``methods`` on oxford_pets, seed 1: every method's scripts
    (base-to-new training, then its test), as many jobs at a time as the machine has cores (up to 4;
    one thread each: the tiny runs are all start-up). On failure: the failed jobs' logs."""
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    proc = subprocess.run([sys.executable, "-m", "runs.jobs", "table1", "--gpus", "", "--jobs", jobs,
                           "--methods", *(m.key for m in methods), "--datasets", "oxford_pets", "--seeds", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env=script_env(OMP_NUM_THREADS="1", **env))
    if proc.returncode != 0:
        failed = [Path(line.rsplit(": ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("  failed: ")]
        logs = "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in failed if log.is_file())
        raise AssertionError(f"runs.jobs table1 failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{logs}")


@pytest.mark.slow
def test_every_method_runs_base_to_new_on_the_kits_open_clip_model_through_the_scripts(kit, tmp_path):
    """BACKBONE=open_clip:tiny-ViT:kit: every registered method with a base-to-new protocol trains on
    the base classes and is evaluated on the new ones by its scripts (through the job engine, as
    scripts/reproduce/table1.sh runs them), and the report shows the rows under that backbone. Not
    here: the few-shot-only methods (no base-to-new protocol). PromptKD's teacher keeps its own
    backbone: the kit's ViT-L/14 stand-in, in the top tree, whose weights come from TEACHER_OPTS."""
    from runs.identity import read_identity
    from runs.layout import Layout
    from runs.steps import Caller, teacher_folder
    from tools.experiments import report

    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EPOCHS": "1", "BACKBONE": OPEN_CLIP_BACKBONE,
           "EXTRA_OPTS": " ".join(kit.opts(open_clip=True)), "TEACHER_OPTS": f"MODEL.BACKBONE.PATH {kit.clip_dir}"}
    methods = [m for m in methods_in_checkout() if m.b2n_cfg]
    assert any(m.teacher for m in methods)
    run_table1(methods, env)
    logs = list((tmp_path / "backbone").rglob("log.txt"))
    assert len(logs) == 2 * len(methods)
    assert all(f"Loading open_clip (backbone: {OPEN_CLIP_BACKBONE}" in log.read_text() for log in logs)
    # the teacher: the one run at the top of the tree, on its config's backbone; the student records it
    (teacher_log,) = tmp_path.glob("base2new/**/log.txt")
    assert "Loading CLIP (backbone: ViT-L/14" in teacher_log.read_text()
    for method in (m for m in methods if m.teacher):
        teacher = teacher_folder(method, Caller.from_environ(env), "oxford_pets", 1)
        assert teacher == teacher_log.parent
        student = Layout(tmp_path, backbone=OPEN_CLIP_BACKBONE).b2n_run(method, "base", "oxford_pets", 1).log.parent
        assert read_identity(student)["references"][method.teacher.option] == {
            "folder": str(teacher), "digest": read_identity(teacher)["digest"], "backbone": "ViT-L/14"}
    text = report_text(report, tmp_path)
    assert f"Backbone: {OPEN_CLIP_BACKBONE}." in text
    tables = text.split(f"Backbone: {OPEN_CLIP_BACKBONE}.")[1]
    reported = [m for m in methods if m.key in REPORTED_METHODS]  # variants and the "other" group appear in no table
    assert "promptkd" in {m.key for m in reported}
    for method in reported:
        row = next(line for line in tables.splitlines() if line.startswith(f"| {method.label} "))
        assert "n/a" not in row.split("|")[2], row  # its oxford_pets base accuracy


def report_text(report, output) -> str:
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert report.main([str(output), "--seeds", "1", "--datasets", "oxford_pets", "--tables", "table1",
                            "modern"]) == 0
    return printed.getvalue()


def test_the_benchmark_times_a_method_on_both_libraries_and_reports_their_ratio(tmp_path):
    """bench_prompts --open-clip: the same random OpenAI-format weights, one case per library."""
    sys.path.insert(0, str(REPO / "bench"))
    import bench_prompts as bench

    base = dict(arch="tiny", device="cpu", clip_path=bench.write_random_clip(str(tmp_path / "clip.pt"), "tiny"),
                work_dir=str(tmp_path / "work"), test_batch=2, text_chunk=0, steps=1, eval_batches=1,
                method="CoOp", num_classes=3,
                root=bench.write_label_space(str(tmp_path / "classes"), bench.read_classnames(3)))
    results = {label: {3: bench.run_method_case(dict(base, **extra))} for label, extra in (
        ("CoOp", {}), ("CoOp" + bench.OPEN_CLIP_SUFFIX, {"backbone": bench.OPEN_CLIP_BACKBONE}))}
    assert all(r[3]["step_ms"] > 0 and r[3]["eval_images_per_s"] > 0 for r in results.values())
    targets = {t["target"]: t for t in bench.check_targets({}, results, [3])}
    ratio = targets["C=3: CoOp [open_clip] step / clip step"]["value"]
    assert ratio == results["CoOp [open_clip]"][3]["step_ms"] / results["CoOp"][3]["step_ms"]
