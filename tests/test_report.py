"""tools.experiments.report (every table beside the paper's numbers), .results and .tsne, on
generated trees of logs in the exact Dassl result format; one end-to-end run of Table 1 on the kit."""
from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from conftest import REPO, run_script

from runs.layout import Layout
from runs.methods import METHODS, get_method
from runs.results import B2N_DATASETS, DG_TARGETS, XD_TARGETS, SeedStats, harmonic_mean, read_metric

GOPRO, COOP, ZSCLIP = METHODS["gopro"], METHODS["coop"], METHODS["zsclip"]


# --------------------------------------------------------------------------------------------
# Fake logs (also used by test_parse_test_res.py)
# --------------------------------------------------------------------------------------------
def result_block(accuracy: float, total: int = 100) -> str:
    correct = round(total * accuracy / 100)
    return (f"=> result\n* total: {total:,}\n* correct: {correct:,}\n* accuracy: {accuracy:.1f}%\n"
            f"* error: {100 - accuracy:.1f}%\n* macro_f1: {accuracy - 1:.1f}%\n")


def write_log(path: Path, accuracy: Optional[float], train: bool) -> Path:
    """A log.txt as train.py writes it: a training log ends with ``Finish training`` + the test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "** Arguments **\nLoading trainer: X\n"
    if train:
        text += "epoch [1/1] batch [5/5] loss 1.0\nCheckpoint saved to model.pth.tar-1\n"
        if accuracy is not None:
            text += "Finish training\nDeploy the last-epoch model\nEvaluate on the *test* set\n"
    if accuracy is not None:
        text += result_block(accuracy) + "Elapsed: 0:00:01\n"
    path.write_text(text)
    return path


def b2n_logs(layout: Layout, method, dataset: str, seed: int, base: Optional[float], new: Optional[float]) -> None:
    if base is not None:
        write_log(layout.b2n_run(method, "base", dataset, seed).log, base, train=True)
    if new is not None:
        write_log(layout.b2n_run(method, "new", dataset, seed).log, new, train=False)


def make_report(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "tools.experiments.report", str(root), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def row_of(text: str, block: str, label: str) -> list:
    """The cells of one Markdown table row (``| label | ... |``) under the heading ``block``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("#").strip() == block)
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} under {block!r}:\n{text}")


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(tmp_path / "output")


# --------------------------------------------------------------------------------------------
# results.py
# --------------------------------------------------------------------------------------------
def test_read_metric_takes_the_final_result_after_the_end_signal(tmp_path):
    log = tmp_path / "log.txt"
    # A per-epoch evaluation before "Finish training" (SELECT_ON_TEST) must not count as the final result.
    log.write_text(result_block(10.0) + "Finish training\n" + result_block(80.0))
    assert read_metric(log, end_signal=("Finish training",)) == 80.0
    assert read_metric(log, keyword="macro_f1") == 79.0
    log.write_text("epoch 1\n" + result_block(10.0).replace("=> result\n", ""))  # unfinished training log
    assert read_metric(log, end_signal=("Finish training", "Finished training")) is None
    log.write_text("Finished training\n" + result_block(55.5))  # MaPLe's pre-0.6.1 Dassl spelling
    assert read_metric(log, end_signal=("Finish training", "Finished training")) == 55.5
    assert read_metric(tmp_path / "missing.txt") is None


def test_seed_stats_use_the_population_std():
    stats = SeedStats((80.0, 82.0, 84.0), expected=3)
    assert stats.mean == 82.0 and math.isclose(stats.std, math.sqrt(8 / 3)) and stats.complete
    assert not SeedStats((80.0,), expected=3).complete and SeedStats((), 3).mean is None


def test_methods_resolve_by_folder_label_or_trainer_and_unknown_names_say_what_exists():
    assert get_method("GOPro") is get_method("gopro") is GOPRO and get_method("ZeroshotCLIP") is ZSCLIP
    with pytest.raises(KeyError, match="choose from zsclip slip coop"):
        get_method("clipper")
    # CoOp trains ImageNet base-to-new with the 50-epoch config (CoOp's ImageNet recipe).
    assert COOP.cfg("b2n", "imagenet") == "vit_b16_ep50_ctxv1"
    assert COOP.cfg("b2n", "dtd") == "vit_b16_ctxv1"


def test_layout_matches_the_paths_of_scripts_common_sh(layout):
    root = layout.root
    assert layout.b2n_run(GOPRO, "base", "dtd", 2).log == \
        root / "base2new/train_base/dtd/shots_16/GOPro/vit_b16/seed2/log.txt"
    assert layout.b2n_run(GOPRO, "new", "dtd", 2).log == root / "base2new/test_new/dtd/shots_16/GOPro/vit_b16/seed2/log.txt"
    assert layout.xd_run(GOPRO, "imagenet", 1).log == root / "imagenet/GOPro/vit_b16_xd_16shots/seed1/log.txt"
    assert layout.xd_run(GOPRO, "dtd", 1).log == root / "evaluation/GOPro/vit_b16_xd_16shots/dtd/seed1/log.txt"
    assert layout.b2n_run(ZSCLIP, "new", "dtd", 1).log == root / "zsclip/new/dtd/log.txt"
    assert layout.xd_run(ZSCLIP, "imagenet_a", 3).log == root / "zsclip/all/imagenet_a/log.txt"


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
def test_table1_cells_are_means_and_stds_over_seeds_and_the_hm_of_the_means(layout):
    for seed, base, new in ((1, 80.0, 70.0), (2, 82.0, 70.0), (3, 84.0, 73.0)):
        b2n_logs(layout, GOPRO, "oxford_pets", seed, base, new)
    write_log(layout.b2n_run(ZSCLIP, "base", "oxford_pets", 0).log, 91.2, train=False)
    write_log(layout.b2n_run(ZSCLIP, "new", "oxford_pets", 0).log, 97.3, train=False)
    text = make_report(layout.root, "--tables", "table1", "--methods", "zsclip", "gopro")

    # base 82 ± sqrt(8/3); new 71 ± sqrt(2); HM(82, 71) = 2·82·71/153 = 76.105; paper GOPro pets 96.36/98.49/97.41.
    assert row_of(text, "OxfordPets", "GOPro") == [
        "GOPro", "82.00 ± 1.63", "96.36", "-14.36", "71.00 ± 1.41", "98.49", "-27.49", "76.10", "97.41", "-21.31",
        "inductive", "GOPro paper"]   # its regime, and where the number beside ours comes from
    # Zero-shot CLIP has one deterministic run: no ± and no seed count.
    assert row_of(text, "OxfordPets", "CLIP")[1:8:3] == ["91.20", "97.30", f"{harmonic_mean(91.2, 97.3):.2f}"]
    assert row_of(text, "OxfordPets", "CLIP")[2] == "91.17"
    assert row_of(text, "OxfordPets", "CLIP")[-2:] == ["training-free", "GOPro paper"]


def test_table1_average_is_the_hm_of_the_mean_base_and_mean_new(layout):
    bases = [60.0 + 3 * i for i in range(11)]
    news = [90.0 - 5 * i for i in range(11)]
    for dataset, base, new in zip(B2N_DATASETS, bases, news):
        b2n_logs(layout, GOPRO, dataset, 1, base, new)
    text = make_report(layout.root, "--tables", "table1", "--methods", "gopro", "--seeds", "1")
    mean_base, mean_new = sum(bases) / 11, sum(news) / 11  # 75.0 and 65.0
    hm_of_means = harmonic_mean(mean_base, mean_new)       # 69.64...
    mean_of_hms = sum(harmonic_mean(b, n) for b, n in zip(bases, news)) / 11
    assert abs(hm_of_means - mean_of_hms) > 0.5  # the two rules really differ here
    row = row_of(text, "Average over 11 datasets", "GOPro")
    assert row[1] == "75.00" and row[4] == "65.00" and row[7] == f"{hm_of_means:.2f}"
    assert row[2:4] == ["84.21", f"{75.0 - 84.21:+.2f}"] and row[9] == f"{hm_of_means - 80.62:+.2f}"


def test_missing_runs_are_marked_not_fatal(layout):
    for dataset in B2N_DATASETS:
        b2n_logs(layout, GOPRO, dataset, 1, 80.0, 70.0 if dataset != "dtd" else None)
    b2n_logs(layout, GOPRO, "dtd", 2, 82.0, None)
    # An unfinished training run (no "Finish training") does not count.
    write_log(layout.b2n_run(GOPRO, "base", "eurosat", 2).log, None, train=True)
    text = make_report(layout.root, "--tables", "table1", "--methods", "coop", "gopro", "--seeds", "1", "2")

    dtd = row_of(text, "DTD", "GOPro")
    assert dtd[1] == "81.00 ± 1.00" and dtd[4] == "n/a (0/2 seeds)" and dtd[7] == "n/a (needs base and new)"
    assert row_of(text, "EuroSAT", "GOPro")[1] == "80.00 ± 0.00 (1/2 seeds)"
    assert row_of(text, "EuroSAT", "GOPro")[7] == f"{harmonic_mean(80, 70):.2f} (from incomplete seeds)"
    assert row_of(text, "Average over 11 datasets", "GOPro")[1] == "n/a (10/11 datasets)"
    assert row_of(text, "ImageNet", "CoOp")[1] == "n/a (0/2 seeds)"
    assert row_of(text, "ImageNet", "CoOp")[2] == "76.47"  # the paper's number is there even without a run


def test_partial_seed_cells_and_hm_say_so(layout):
    b2n_logs(layout, GOPRO, "dtd", 1, 80.0, 60.0)
    b2n_logs(layout, GOPRO, "dtd", 2, None, 70.0)
    row = row_of(make_report(layout.root, "--tables", "table1", "--methods", "gopro", "--seeds", "1", "2"), "DTD", "GOPro")
    assert row[1] == "80.00 ± 0.00 (1/2 seeds)" and row[4] == "65.00 ± 5.00"
    assert row[7] == f"{harmonic_mean(80.0, 65.0):.2f} (from incomplete seeds)"


def test_a_restricted_dataset_list_averages_what_it_lists_without_a_delta(layout):
    b2n_logs(layout, GOPRO, "dtd", 1, 80.0, 60.0)
    text = make_report(layout.root, "--tables", "table1", "--methods", "gopro", "--seeds", "1", "--datasets", "dtd")
    row = row_of(text, "Average over the 1 listed datasets", "GOPro")
    assert row[1:4] == ["80.00", "84.21", "–"]
    assert "### ImageNet" not in text


# --------------------------------------------------------------------------------------------
# Table 2 (cross-dataset, domain generalisation)
# --------------------------------------------------------------------------------------------
def test_cross_dataset_reads_the_source_training_log_and_averages_the_ten_targets(layout):
    for seed, offset in ((1, 0.0), (2, 2.0)):
        write_log(layout.xd_run(GOPRO, "imagenet", seed).log, 70.0 + offset, train=True)
        for i, dataset in enumerate(XD_TARGETS):
            write_log(layout.xd_run(GOPRO, dataset, seed).log, 50.0 + i + offset, train=False)
        for dataset in DG_TARGETS:
            write_log(layout.xd_run(GOPRO, dataset, seed).log, 60.0 + offset, train=False)
    write_log(layout.xd_run(ZSCLIP, "imagenet", 0).log, 66.7, train=False)
    text = make_report(layout.root, "--tables", "xd", "dg", "--methods", "zsclip", "gopro", "--seeds", "1", "2")

    xd = row_of(text, "Source: ImageNet", "GOPro")
    assert xd[1] == "71.00 ± 1.00" and xd[2] == "51.00 ± 1.00" and xd[11] == "60.00 ± 1.00"
    assert xd[12] == "55.50"  # mean over targets of (50..59) + 1
    assert row_of(text, "Source: ImageNet", "GOPro (paper)")[12] == "67.86"
    assert row_of(text, "Source: ImageNet", "GOPro Δ")[12] == f"{55.5 - 67.86:+.2f}"
    clip = row_of(text, "Source: ImageNet", "CLIP")
    assert clip[1] == "66.70" and clip[2] == "n/a (not run)" and clip[12] == "n/a (0/10 targets)"
    dg = text.split("## Table 2b")[1]
    assert row_of(dg, "Source: ImageNet", "GOPro (paper)")[1:] == ["73.27", "65.35", "50.36", "52.23", "78.02"]
    assert row_of(dg, "Source: ImageNet", "GOPro")[1:] == ["71.00 ± 1.00"] + ["61.00 ± 1.00"] * 4


# --------------------------------------------------------------------------------------------
# Table 3 and Figure 2
# --------------------------------------------------------------------------------------------
def test_ablation_rows_come_from_their_own_trees_and_the_full_row_from_table1(layout):
    from runs.layout import ablation_layout

    for dataset in B2N_DATASETS:
        b2n_logs(ablation_layout(layout, "ce"), GOPRO, dataset, 1, 81.0, 71.0)
        b2n_logs(layout, GOPRO, dataset, 1, 85.0, 75.0)  # = row "all"
    text = make_report(layout.root, "--tables", "table3", "--seeds", "1")
    table = text.split("## Table 3")[1]
    ce = next(l for l in table.splitlines() if "| ce " in l)
    assert f"81.00 / 71.00 / {harmonic_mean(81, 71):.2f}" in ce
    assert "82.15 / 75.02 / 78.42" in ce and "81.34 / 72.16 / 76.48" in ce  # readings A and B
    assert f"{81 - 82.15:+.2f} / {71 - 75.02:+.2f}" in ce
    full = next(l for l in table.splitlines() if "| all " in l)
    assert f"85.00 / 75.00 / {harmonic_mean(85, 75):.2f}" in full and "84.21 / 77.32 / 80.62" in full
    assert "n/a (0/11 datasets)" in next(l for l in table.splitlines() if "| ce_con " in l)


def test_figure2_table_and_plot(layout, tmp_path):
    from runs.layout import nctx_layout

    for point, base in (("1", 70.0), ("4", 75.0), ("16", 72.0), ("init", 80.0)):
        for dataset in B2N_DATASETS:
            b2n_logs(nctx_layout(layout, point), GOPRO, dataset, 1, base, base - 10)
    figures = tmp_path / "figs"
    text = make_report(layout.root, "--tables", "fig2", "--seeds", "1", "--figures", str(figures))
    title = "Figure 2: accuracy against the number of context tokens M (GOPro)"
    assert row_of(text, title, "M=4, random init")[1:] == ["75.00", "65.00", f"{harmonic_mean(75, 65):.2f}"]
    assert row_of(text, title, 'M=4, "a photo of a"')[1] == "80.00"
    assert "n/a (0/11 datasets)" in text  # M = 2 and 8 were not run
    png = figures / "fig2_nctx.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure2_without_runs_writes_no_plot(layout, tmp_path):
    layout.root.mkdir(parents=True)
    text = make_report(layout.root, "--tables", "fig2", "--figures", str(tmp_path / "figs"))
    assert "no plot written" in text and not (tmp_path / "figs").exists()


# --------------------------------------------------------------------------------------------
# Files and command line
# --------------------------------------------------------------------------------------------
def test_a_setting_has_one_footnote_number_in_the_dataset_rows_and_the_average_row():
    from tools.experiments.report import Block, Provenance, Section, to_markdown

    epochs, size = "OPTIM.MAX_EPOCH=2", "INPUT.SIZE=[32, 32]"
    rows = [["DTD", "60.00" + Provenance(frozenset({epochs})).mark()],
            ["EuroSAT", "70.00" + Provenance(frozenset({epochs, size})).mark()],
            ["Average", "65.00" + Provenance.union([Provenance(frozenset({epochs})),
                                                   Provenance(frozenset({epochs, size}))]).mark()]]
    text = to_markdown([Section("t", "T", [Block("", ["row", "ours"], rows)])], "# report")
    number = {setting: n for n, setting in re.findall(r"^\* \[(\d+)\] (.+)$", text, re.M)}
    assert set(number) == {epochs, size}, text  # one footnote per setting
    both = "".join(f"[{number[s]}]" for s in sorted((epochs, size)))
    assert f"60.00 [{number[epochs]}]" in text and f"70.00 {both}" in text and f"65.00 {both}" in text


def test_markdown_and_csv_files(layout, tmp_path):
    b2n_logs(layout, GOPRO, "dtd", 1, 80.0, 60.0)
    md, csv_dir = tmp_path / "r" / "report.md", tmp_path / "csv"
    stdout = make_report(layout.root, "--methods", "gopro", "--seeds", "1", "--markdown", str(md), "--csv", str(csv_dir),
                         "--figures", str(tmp_path / "f"))
    assert md.read_text() in stdout
    names = sorted(p.name for p in csv_dir.iterdir())
    assert names == ["fig2_nctx.csv", "table1_base2new.csv", "table2_cross_dataset.csv",
                     "table2_domain_generalization.csv", "table3_ablation.csv"]
    rows = list(csv.DictReader((csv_dir / "table1_base2new.csv").open()))
    dtd = {r["metric"]: r for r in rows if r["row"] == "GOPro" and r["column"] == "dtd"}
    assert float(dtd["base"]["ours"]) == 80.0 and float(dtd["base"]["paper"]) == 82.41
    assert math.isclose(float(dtd["hm"]["ours"]), harmonic_mean(80, 60), abs_tol=1e-4)
    assert math.isclose(float(dtd["base"]["delta"]), 80 - 82.41, abs_tol=1e-4)
    assert dtd["base"]["seeds"] == "1" and dtd["base"]["expected_seeds"] == "1"


def test_bad_arguments_are_explained(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "tools.experiments.report", str(tmp_path / "nope")], cwd=REPO,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    tmp_path.joinpath("out").mkdir()
    bad = subprocess.run([sys.executable, "-m", "tools.experiments.report", str(tmp_path / "out"), "--methods", "clipper"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "choose from" in bad.stderr


def test_paper_numbers_are_self_consistent():
    """HM = 2bn/(b+n), averages = means over datasets, XD Avg = mean of the 10 targets (one known typo)."""
    data = json.loads((REPO / "paper" / "gopro_bmvc2023_results.json").read_text())
    b2n = data["base2new"]
    for dataset in (*B2N_DATASETS, "average"):
        for label, (base, new, hm) in b2n[dataset].items():
            if (dataset, label) == ("oxford_flowers", "CoCoOp"):
                continue  # published 94.87 / 71.15 / 81.71: the HM fits 71.75 (documented in the JSON)
            assert abs(harmonic_mean(base, new) - hm) < 0.011, (dataset, label)
    for label in b2n["methods"]:
        for k in (0, 1):
            expected = sum(b2n[d][label][k] for d in B2N_DATASETS) / 11
            tolerance = 0.06 if (label, k) == ("CoCoOp", 1) else 0.006
            assert abs(expected - b2n["average"][label][k]) < tolerance, (label, k)
    xd = data["cross_dataset"]
    assert xd["columns"] == ["imagenet", *XD_TARGETS, "average"]
    for label in b2n["methods"]:
        assert abs(sum(xd[label][1:11]) / 10 - xd[label][11]) < 0.006, label
    assert data["domain_generalization"]["columns"] == ["imagenet", *DG_TARGETS]
    abl = data["loss_ablation_base2new_average"]
    assert abl["reading_A"][-1]["values"] == abl["reading_B"][-1]["values"] == b2n["average"]["GOPro"]


# --------------------------------------------------------------------------------------------
# t-SNE (tools/experiments/tsne.py)
# --------------------------------------------------------------------------------------------
def test_tsne_points_are_deterministic_and_keep_clusters_and_the_plot_is_a_png(tmp_path):
    from tools.experiments import tsne

    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(c * 4, 1, (15, 16)) for c in range(3)]).astype(np.float32)
    labels = np.repeat(np.arange(3), 15)
    first = tsne.tsne_2d(features, 1)
    assert first.shape == (45, 2)
    # The three clusters stay apart: every point's nearest neighbour has its class.
    distances = np.linalg.norm(first[:, None] - first[None], axis=-1) + np.eye(45) * 1e9
    assert (labels[distances.argmin(1)] == labels).all()
    small = features[::5]
    assert np.allclose(tsne.tsne_2d(small, 3), tsne.tsne_2d(small, 3))
    assert tsne.tsne_2d(features[:5], 0).shape == (5, 2)  # perplexity shrinks with n
    with pytest.raises(ValueError, match="at least 2 images"):
        tsne.tsne_2d(features[:1], 0)
    path = tsne.plot_panels([("A", first, labels), ("B", -first, labels)], ["x", "y", "z"], tmp_path / "t.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_tsne_keeps_the_classes_of_a_small_test_set_apart(seed):
    """27 images in 3 classes (a few-class fixture's base test set): with the perplexity near n − 1
    t-SNE often returned structureless noise for well-separated features (silhouette about −0.08)."""
    from tools.experiments import tsne
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 9)
    features = rng.normal(size=64) + 0.35 * rng.normal(size=(3, 64))[labels] + 0.12 * rng.normal(size=(27, 64))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    assert silhouette_score(features, labels) > 0.6
    assert silhouette_score(tsne.tsne_2d(features.astype(np.float32), 1), labels) > 0.6


def test_tsne_panels_point_at_the_base2new_checkpoints(tmp_path):
    from tools.experiments import tsne

    layout = Layout(tmp_path)
    panel = tsne.method_panel(layout, "gopro", "eurosat", 2)
    assert panel.model_dir == layout.b2n_dir("train_base", "eurosat", "GOPro", "vit_b16", 2)
    assert panel.config == REPO / "configs/trainers/GOPro/vit_b16.yaml" and panel.trainer == "GOPro"
    clip = tsne.method_panel(layout, "zsclip", "eurosat", 2)
    assert clip.model_dir is None and clip.config == REPO / "configs/trainers/CoOp/vit_b16.yaml"
    custom = tsne.custom_panel("Mine=CoOp:vit_b16_ctxv1:/some/dir")
    assert custom == tsne.Panel("Mine", "CoOp", REPO / "configs/trainers/CoOp/vit_b16_ctxv1.yaml", Path("/some/dir"))
    with pytest.raises(SystemExit, match="LABEL=TRAINER:CONFIG:MODEL_DIR"):
        tsne.custom_panel("no-equals-sign")


# --------------------------------------------------------------------------------------------
# End to end on the tiny kit
# --------------------------------------------------------------------------------------------
def kit_env(kit, output: Path) -> dict:
    return {"DATA": str(kit.data), "OUTPUT": str(output), "EXTRA_OPTS": " ".join(kit.opts()), "EPOCHS": "1",
            "METHODS": "zsclip coop gopro", "DATASETS": "oxford_pets", "SEEDS": "1", "PYTHON": sys.executable}


@pytest.mark.slow
def test_table1_reproduction_on_the_kit_fills_the_report(kit, tmp_path):
    output = tmp_path / "output"
    proc = run_script("reproduce/table1.sh", "--gpus", "", env=kit_env(kit, output), timeout=1800)
    assert "0 failed" in proc.stdout, proc.stdout
    text = make_report(output, "--tables", "table1", "--methods", "zsclip", "coop", "gopro", "--seeds", "1")
    for label, paper in (("CLIP", "91.17"), ("CoOp", "93.67"), ("GOPro", "96.36")):
        row = row_of(text, "OxfordPets", label)
        assert not any(cell.startswith("n/a") for cell in row), row
        assert row[2] == paper and row[3] != "–"
        base, hm = (row[i].split(" [")[0] for i in (1, 7))  # kit runs are marked: not the paper's settings
        assert 0 <= float(base) <= 100 and 0 <= float(hm) <= 100 and row[1].endswith("]")
    assert "INPUT.SIZE=[32, 32]" in text.split("## Settings that are not the paper's")[1]
    # A second call finds everything finished and runs nothing.
    again = run_script("reproduce/table1.sh", "--gpus", "", env=kit_env(kit, output))
    assert "6 finished run(s) skipped" in again.stdout and "0 run(s) done" in again.stdout


@pytest.mark.slow
def test_tsne_embeds_a_trained_checkpoint_of_the_kit(kit, tmp_path):
    output = tmp_path / "output"
    env = kit_env(kit, output)
    run_script("gopro/base2new_train.sh", "oxford_pets", "1", env=env)
    run_script("gopro/tsne.sh", "1", "oxford_pets", env={**env, "METHODS": "zsclip gopro"})
    png = output / "figures" / "tsne_oxford_pets_seed1.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    points = np.load(png.with_suffix(".npz"))
    assert points["GOPro_points"].shape[1] == 2 and len(points["GOPro_labels"]) == len(points["GOPro_points"])
    assert set(points["GOPro_labels"]) <= {0, 1, 2}  # base classes only (3 of the kit's 5)
