"""GDA, Tip-Adapter and Tip-Adapter-F: closed forms against hand arithmetic, the validation
searches, and real train.py runs on the kit (shared feature cache, --eval-only, base-to-new,
upstream's Tip-Adapter files)."""
from __future__ import annotations

import math
import re

import pytest
import torch

from conftest import REPO, accuracies, make_trainer, run_script, run_train
from numerics import assert_close
from trainers.frozen_features import grid_search
from trainers.gda import (ALPHAS, class_mean_precision, gda_logits, linear_discriminant, shrinkage_precision,
                          unseen_class_discriminant)
from trainers.tip_adapter import cache_logits, cache_model, search_beta_alpha, search_grid, tip_logits

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# GDA
# --------------------------------------------------------------------------------------------
def test_shrinkage_precision_by_hand():
    # centred rows: S = XᵀX = diag(2, 8); tr(S) / (N − 1) = 10 / 3; D · (S + 10/3 I)⁻¹ = 2 · diag(3/16, 3/34)
    centred = t([[1, 0], [-1, 0], [0, 2], [0, -2]])
    assert_close(shrinkage_precision(centred), t([[3 / 8, 0], [0, 3 / 17]]), what="shrinkage precision")


def test_class_mean_precision_by_hand():
    # class 0: (0,0), (2,0) → cov diag(2, 0); class 1: (0,1), (0,3) → cov diag(0, 2); mean diag(1, 1)
    features = t([[0, 0], [2, 0], [0, 1], [0, 3]])
    assert_close(class_mean_precision(features, torch.tensor([0, 0, 1, 1]), 2), torch.eye(2), what="class-mean precision")


def test_linear_discriminant_by_hand():
    means, precision = t([[1, 0], [0, 2]]), t([[0.5, 0], [0, 0.25]])
    weight, bias = linear_discriminant(means, precision)
    assert_close(weight, t([[0.5, 0], [0, 0.5]]), what="W")
    # b_c = log(1/2) − ½ μ_c Σ⁻¹ μ_cᵀ: ½ · 0.5 and ½ · 1
    assert_close(bias, t([math.log(0.5) - 0.25, math.log(0.5) - 0.5]), what="b")
    features = t([[1, 0]])
    # 100 · f W_zsᵀ + α (f Wᵀ + b) with W_zs = I, α = 2
    expected = t([[100 + 2 * (0.5 + math.log(0.5) - 0.25), 2 * (math.log(0.5) - 0.5)]])
    assert_close(gda_logits(features, torch.eye(2), weight, bias, 2.0), expected, what="GDA logits")


def test_unseen_class_discriminant_by_hand():
    # w = (1, 0): its 2 nearest training features are (1, 0) and (0.8, 0.6); with 2 copies of w,
    # μ = (0.95, 0.15). Around w: Σ_w = [[0.04, −0.12], [−0.12, 0.36]] (k − 1 = 1), tr 0.4;
    # precision 2 · inv([[0.44, −0.12], [−0.12, 0.76]]) = 2 / 0.32 · [[0.76, 0.12], [0.12, 0.44]].
    train = t([[1, 0], [0.8, 0.6], [0, 1]])
    weight, bias = unseen_class_discriminant(train, t([[1, 0]]), topk=2, text_copies=2)
    assert_close(weight, t([[4.625, 1.125]]), what="unseen-class W", ulps=64)
    assert_close(bias, t([-0.5 * (4.625 * 0.95 + 1.125 * 0.15)]), what="unseen-class b", ulps=64)


def test_grid_search_keeps_the_first_best_and_the_initial_value_when_nothing_scores():
    scores = dict(zip(ALPHAS, [50, 80, 80, 60, 80, 10, 0]))
    assert grid_search(ALPHAS, scores.get, initial=0.1) == (0.001, 80)
    assert grid_search(ALPHAS, lambda a: 0.0, initial=0.1) == (0.1, 0.0)


# --------------------------------------------------------------------------------------------
# Tip-Adapter
# --------------------------------------------------------------------------------------------
def test_cache_logits_and_tip_logits_by_hand():
    assert_close(cache_logits(t([[1, 0.5]]), torch.eye(2), beta=2.0), t([[1, math.exp(-1)]]), what="cache logits")
    # affinity f Kᵀ = (1, 0.6); exp(−β(1 − A)) L with β = 1: (1, e^−0.4); α = 2
    logits = tip_logits(t([[1, 0]]), torch.eye(2), t([[1, 0], [0.6, 0.8]]), torch.eye(2), beta=1.0, alpha=2.0)
    assert_close(logits, t([[100 + 2, 2 * math.exp(-0.4)]]), what="Tip logits")


def test_search_grid_is_upstreams():
    assert_close(torch.tensor(search_grid(7, 4)), torch.tensor([0.1, 1.825, 3.55, 5.275]), what="grid")


def test_search_finds_the_first_pair_that_turns_the_prediction():
    # zero-shot prefers class 0 by 100 · (1 − 0.99) = 1 point; the one cache entry (class 1) at
    # affinity 0.6 adds α · exp(−0.4 β): β = 0.1 needs α > 1.04 → α = 1.55, the third of 0.1 + i · 0.725
    zero_shot = t([[1, 0], [0.99, math.sqrt(1 - 0.99 ** 2)]])
    features, labels = t([[1, 0]]), torch.tensor([1])
    keys, values = t([[0.6, 0.8]]), t([[0, 1]])
    (beta, alpha), acc = search_beta_alpha(features, labels, zero_shot, keys, values, scales=(1.5, 3), steps=(2, 4))
    assert (round(beta, 6), round(alpha, 6), acc) == (0.1, 1.55, 100.0)
    # the cache votes for class 0 too: no pair beats 0 %, upstream's (0, 0) stands
    assert search_beta_alpha(features, labels, zero_shot, keys, t([[1, 0]]), (1.5, 3), (2, 4)) == ((0.0, 0.0), 0.0)


def test_cache_model_averages_the_raw_passes_then_normalises():
    passes = [t([[2, 0], [0, 1]]), t([[0, 2], [0, 3]])]
    keys, values = cache_model(passes, torch.tensor([1, 0]), 3)
    assert_close(keys, t([[math.sqrt(0.5), math.sqrt(0.5)], [0, 1]]), what="cache keys")
    assert torch.equal(values, t([[0, 1, 0], [1, 0, 0]]))


# --------------------------------------------------------------------------------------------
# train.py on the kit
# --------------------------------------------------------------------------------------------
def fit_args(kit, trainer, out, cache, *opts, flags=(), config="vit_b16"):
    return ["--root", str(kit.data), "--seed", "1", "--trainer", trainer, "--dataset-config-file", DATASET_CFG,
            "--config-file", str(REPO / "configs/trainers" / trainer / f"{config}.yaml"), "--output-dir", str(out),
            *flags, *kit.opts(), "DATASET.NUM_SHOTS", "16", "TRAINER.FEATURE_CACHE_DIR", str(cache), *opts]


@pytest.mark.slow
def test_a_second_training_free_method_reads_the_cache_and_eval_only_reproduces_it(kit, tmp_path):
    cache = tmp_path / "cache"
    run_train(*fit_args(kit, "GDA", tmp_path / "gda", cache))
    gda_log = (tmp_path / "gda" / "log.txt").read_text()
    assert "Feature cache: 0 read, 11 encoded" in gda_log  # 10 augmented passes + val

    run_train(*fit_args(kit, "TipAdapter", tmp_path / "tip", cache))
    log = (tmp_path / "tip" / "log.txt").read_text()
    assert len(re.findall(r"Feature cache: read train_x features, augmented pass \d+ .* saving [\d.]+ s", log)) == 10
    assert "Feature cache: 11 read, 0 encoded" in log and "Feature cache: read test features" in log
    trained = accuracies(log)
    assert len(trained) == 1 and (tmp_path / "tip" / "adapter" / "model.pth.tar-1").is_file()

    run_train(*fit_args(kit, "TipAdapter", tmp_path / "tip_eval", cache,
                        flags=("--eval-only", "--model-dir", str(tmp_path / "tip"), "--load-epoch", "last")))
    assert accuracies((tmp_path / "tip_eval" / "log.txt").read_text()) == trained


@pytest.mark.slow
def test_gda_base_to_new_through_the_scripts(kit, tmp_path):
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EXTRA_OPTS": " ".join(kit.opts())}
    run_script("run.sh", "gda", "base2new_train", "oxford_pets", "1", env=env)
    run_script("run.sh", "gda", "base2new_test", "oxford_pets", "1", env=env)
    runs = tmp_path / "base2new"
    base_log = next(runs.glob("train_base/oxford_pets/shots_16/GDA/vit_b16_base2new/seed1/log.txt")).read_text()
    new_log = next(runs.glob("test_new/oxford_pets/shots_16/GDA/vit_b16_base2new/seed1/log.txt")).read_text()
    assert "GDA: alpha" in base_log and len(accuracies(base_log)) == 1
    assert "GDA: unseen classes" in new_log and "# classes  2" in new_log and len(accuracies(new_log)) == 1


def write_upstream_tip_cache(folder, trainer, shots, fine_tuned: bool):
    """Upstream's cache files (utils.build_cache_model, main.run_tip_adapter_F): keys [E, N],
    one-hot values [N, C] in fp16, and the fine-tuned Linear weight [N, E] as a Parameter."""
    train = trainer.dm.dataset.train_x
    embed = trainer.backbone.embed_dim
    keys = torch.nn.functional.normalize(torch.randn(len(train), embed), dim=-1)
    labels = torch.tensor([item.label for item in train])
    folder.mkdir(parents=True)
    torch.save(keys.t().half(), folder / f"keys_{shots}shots.pt")
    torch.save(torch.nn.functional.one_hot(labels).half(), folder / f"values_{shots}shots.pt")
    if fine_tuned:
        torch.save(torch.nn.Parameter(keys.half()), folder / f"best_F_{shots}shots.pt")


@pytest.mark.slow
def test_upstream_tip_adapter_f_files_evaluate_with_eval_only(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path / "probe", "TipAdapterF", "vit_b16")
    write_upstream_tip_cache(tmp_path / "upstream", trainer, 16, fine_tuned=True)
    out = tmp_path / "eval"
    run_train(*fit_args(kit, "TipAdapterF", out, tmp_path / "cache",
                        flags=("--eval-only", "--model-dir", str(tmp_path / "upstream"))))
    log = (out / "log.txt").read_text()
    assert "Loaded upstream Tip-Adapter cache" in log and "TipAdapterF: beta" in log and len(accuracies(log)) == 1

    (tmp_path / "upstream" / "best_F_16shots.pt").unlink()  # TipAdapterF needs its fine-tuned keys
    proc = run_train(*fit_args(kit, "TipAdapterF", tmp_path / "eval2", tmp_path / "cache",
                               flags=("--eval-only", "--model-dir", str(tmp_path / "upstream"))), check=False)
    assert proc.returncode != 0 and "best_F_16shots.pt" in proc.stderr.splitlines()[-1]


# --------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------
def test_c_search_is_lpclips_sweep_then_interval_halving():
    from trainers.linear_probe import INITIAL_C, search_c

    def score(c):  # val accuracy peaking at C = 10^2.3
        return 100.0 - abs(math.log10(c) - 2.3)

    final, history = search_c(score, steps=3)
    assert [c for c, _ in history[:7]] == list(INITIAL_C)
    # peak 1e2 → [10, 1e3]: right wins → [1e2, 1e3]: left wins → [1e2, 10^2.5]: right wins
    expected = [10.0, 1e3, 1e2, 1e3, 1e2, 10 ** 2.5]
    assert_close(torch.tensor([c for c, _ in history[7:]], dtype=torch.float64),
                 torch.tensor(expected, dtype=torch.float64), what="C probed")
    assert_close(torch.tensor(final, dtype=torch.float64), torch.tensor(10 ** 2.5, dtype=torch.float64), what="C")


@pytest.mark.parametrize("num_classes", [2, 4])
def test_classifier_tensors_reproduce_scikit_learns_decisions(num_classes):
    from trainers.linear_probe import classifier_tensors, fit_logistic

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % num_classes
    features = torch.randn(40, 6, generator=generator) + 3.0 * torch.nn.functional.one_hot(labels, 6).float()
    model = fit_logistic(features.numpy(), labels.numpy(), 1.0, 1000)
    weight, bias = classifier_tensors(model, num_classes)
    logits = features @ weight.t() + bias
    assert torch.equal(logits.argmax(-1), torch.from_numpy(model.predict(features.numpy())))
    if num_classes > 2:
        assert_close(logits, torch.from_numpy(model.decision_function(features.numpy())).float(),
                     what="logits vs decision_function", ulps=64)


@pytest.mark.slow
def test_linear_probe_fits_on_the_kit_and_eval_only_reproduces_it(kit, tmp_path):
    cache = tmp_path / "cache"
    run_train(*fit_args(kit, "LinearProbe", tmp_path / "lp", cache))
    log = (tmp_path / "lp" / "log.txt").read_text()
    assert "LinearProbe: C = " in log and len(accuracies(log)) == 1
    run_train(*fit_args(kit, "LinearProbe", tmp_path / "lp_eval", cache,
                        flags=("--eval-only", "--model-dir", str(tmp_path / "lp"), "--load-epoch", "last")))
    evaluated = (tmp_path / "lp_eval" / "log.txt").read_text()
    assert "Feature cache: read test features" in evaluated and accuracies(evaluated) == accuracies(log)


# --------------------------------------------------------------------------------------------
# CLIP-Adapter
# --------------------------------------------------------------------------------------------
def test_clip_adapter_mixes_the_adapted_features_by_hand():
    from types import SimpleNamespace

    from trainers.clip_adapter import AdaptedImageCLIP, ResidualAdapter
    from trainers.clip_backbone import ImageOutput

    adapter = ResidualAdapter(4, reduction=2)
    with torch.no_grad():
        adapter.fc[0].weight.copy_(t([[1, 0, 0, 0], [0, 1, 0, 0]]))
        adapter.fc[2].weight.copy_(t([[1, 0], [0, 1], [0, 0], [0, 0]]))
    backbone = SimpleNamespace(encode_image=lambda image: ImageOutput(image))  # "features" = the input
    model = AdaptedImageCLIP(backbone, adapter, torch.eye(4), ratio=0.2)
    # A(f) = ReLU(W₂ ReLU(W₁ f)) = (1, 0, 0, 0) for f = (1, −2, 3, 0); 0.2 A(f) + 0.8 f = (1, −1.6, 2.4, 0)
    mixed = t([[1.0, -1.6, 2.4, 0.0]])
    assert_close(model.visual_embedding(t([[1, -2, 3, 0]])), mixed / mixed.norm(), what="adapted image features")


@pytest.mark.slow
def test_an_upstream_clip_adapter_checkpoint_evaluates_and_a_zero_adapter_is_zero_shot_clip(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path / "probe", "CLIPAdapter", "vit_b16")
    width = trainer.backbone.embed_dim
    folder = tmp_path / "upstream" / "clip_adapter"  # upstream's registered name and Dassl's file layout
    folder.mkdir(parents=True)
    state = {"fc.0.weight": torch.zeros(width // 4, width), "fc.2.weight": torch.zeros(width, width // 4)}
    torch.save({"state_dict": state, "epoch": 200, "optimizer": None, "scheduler": None}, folder / "model.pth.tar-200")
    common = ["--root", str(kit.data), "--dataset-config-file", DATASET_CFG, *kit.opts(), "DATASET.NUM_SHOTS", "16"]
    run_train("--seed", "1", "--trainer", "CLIPAdapter", "--config-file",
              str(REPO / "configs/trainers/CLIPAdapter/vit_b16.yaml"), "--output-dir", str(tmp_path / "eval"),
              "--eval-only", "--model-dir", str(tmp_path / "upstream"), "--load-epoch", "200", *common,
              "TRAINER.CLIPADAPTER.PREC", "fp16")
    run_train("--trainer", "ZeroshotCLIP", "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"),
              "--output-dir", str(tmp_path / "zs"), "--eval-only", *common)
    adapted = accuracies((tmp_path / "eval" / "log.txt").read_text())
    assert len(adapted) == 1 and adapted == accuracies((tmp_path / "zs" / "log.txt").read_text())
