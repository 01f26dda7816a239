"""The GPU memory predictor (``tools/memory.py``): its tracker counts what the allocator holds, its
meta-device prediction of a training step agrees with the allocation measured on this CPU for
every registered method, and the command, the knob advice and train.py's warning work."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tools import memory
from runs.methods import METHODS

SMALL = dict(num_classes=10, prec="fp32", backbone="tiny")
# Stated error of the prediction at small sizes: the step's extra memory (peak minus what was alive
# before it) predicted on meta tensors vs the CPU allocator's own account of the real step (from
# the profiler's allocation events); a frozen-feature method's step is its GPU work before the fit
# (zero-shot class features, one feature-extraction batch). Measured: within 4 % for every method
# but those with a large input batch (batch 32: CoOp, KgCoOp, TCP, CLIP-Adapter, SLIP, ProGrad; the
# frozen-feature methods' extraction batch: 12-19 % over), where the difference is the batch's copy
# to the model's device, which a GPU step makes and a CPU step does not (on the GPU: bench/RESULTS.md).
PREDICTION_ERROR = 0.25


def test_tracker_counts_live_storages_and_their_peak():
    with memory.MemoryTracker(meta=False, block=1) as tracker:
        a = torch.empty(1000, dtype=torch.float32)          # 4000 bytes
        view = a[10:]                                         # a view: no new storage
        b = torch.empty(500, dtype=torch.float16)             # 1000 bytes
        assert tracker.live == 5000
        del a, view
        c = torch.empty(250, dtype=torch.float64)             # 2000 bytes, after 4000 were freed
        assert (tracker.live, tracker.peak) == (3000, 5000)
        del b, c
    assert tracker.live == 0


def test_tracker_rounds_like_the_cuda_allocator():
    with memory.MemoryTracker(meta=True) as tracker:
        x = torch.empty(3, device="meta")                     # 12 bytes: one 512-byte block
        assert tracker.live == memory.BLOCK
        del x


def predicted_methods():
    """Every registry method this checkout has (the predictor refuses none)."""
    return [key for key, m in METHODS.items() if m.in_checkout()]


def test_a_backbone_without_a_known_architecture_is_a_clear_error():
    with pytest.raises(SystemExit, match="No architecture known for backbone 'RN50'"):
        memory.main(["--trainer", "CoOp", "--classes", "10", "--backbone", "RN50", "--no-knobs"])


@pytest.mark.slow
@pytest.mark.parametrize("key", predicted_methods())
def test_prediction_matches_the_measured_cpu_allocation(key):
    method = METHODS[key]
    setting = memory.Setting(method.trainer, str(method.config_path(method.training_cfg())), **SMALL)
    measured = memory.measured_step_extra_on_cpu(setting)
    tracked = memory.measure(setting, meta=False, block=1)
    predicted = memory.measure(setting, meta=True, block=1)
    # the tracker's account of the real step is the allocator's (up to a few bytes that C++ code
    # allocates outside the dispatcher: 64 of 704,264 for CoCoOp)
    assert abs(tracked.step_extra - measured) <= 0.01 * measured, (tracked.step_extra, measured)
    assert abs(predicted.step_extra - measured) <= PREDICTION_ERROR * measured, \
        f"{key}: predicted {predicted.step_extra} bytes, measured {measured}"
    assert predicted.weights == tracked.weights and predicted.learnable == tracked.learnable
    evaluation = tracked.eval_peak - tracked.weights  # the batch's own memory, beyond the model
    assert abs(predicted.eval_peak - tracked.eval_peak) <= PREDICTION_ERROR * evaluation, \
        f"{key}: evaluation peak predicted {predicted.eval_peak} bytes, tracked {tracked.eval_peak}"
    assert tracked.placeholder_scalars == 0


def fake_prediction(needed_gib: float, **knobs) -> memory.Prediction:
    setting = memory.Setting("GOPro", "", 1000, **knobs)
    bytes_ = int((needed_gib - memory.OVERHEAD_GIB) * memory.GIB)
    return memory.Prediction(setting, train_peak=bytes_, eval_peak=bytes_ // 2)


def test_cheapest_fitting_setting_takes_the_first_that_fits():
    predictions = [fake_prediction(30), fake_prediction(20, text_chunk=1000), fake_prediction(12, checkpoint_text=True)]
    assert memory.cheapest_fitting(predictions, 80) is predictions[0]
    assert memory.cheapest_fitting(predictions, 24) is predictions[1]
    assert memory.cheapest_fitting(predictions, 16) is predictions[2]
    assert memory.cheapest_fitting(predictions, 8) is None


def test_knobs_go_from_chunks_to_checkpointing_to_smaller_batches():
    method = METHODS["gopro"]
    settings = memory.knob_settings(memory.Setting(method.trainer, str(method.config_path(method.b2n_cfg)), 1000))
    described = [s.describe() for s in settings]
    assert described[:4] == ["config as is", "TEXT_CHUNK 1000", "CHECKPOINT_TEXT", "TEXT_CHUNK 1000, CHECKPOINT_TEXT"]
    assert described[4:] == ["batch 2, TEXT_CHUNK 1000, CHECKPOINT_TEXT", "batch 1, TEXT_CHUNK 1000, CHECKPOINT_TEXT"]


def test_command_prints_the_breakdown(capsys):
    memory.main(["--trainer", "CoOp", "--classes", "10", "--backbone", "tiny", "--no-knobs"])
    out = capsys.readouterr().out
    for line in ("frozen weights", "learnable parameters", "gradients + optimizer state",
                 "activations kept for backward", "training step peak", "evaluation peak", "a GPU needs"):
        assert line in out


def test_train_py_warns_when_the_card_is_too_small(kit, tmp_path, monkeypatch, capsys):
    from conftest import make_trainer

    trainer = make_trainer(kit, tmp_path, "CoOp", "vit_b16_ctxv1", "MODEL.BACKBONE.NAME", "tiny",
                           "MODEL.BACKBONE.PATH", str(kit.clip_path))  # the file: "tiny" names no file of the kit's folder
    assert memory.warn_if_memory_short(trainer.cfg, trainer) is None  # a CPU run: nothing predicted
    cfg = trainer.cfg.clone()
    cfg.defrost()
    cfg.USE_CUDA = True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(name="tiny card", total_memory=512 * 2**20))
    prediction = memory.warn_if_memory_short(cfg, trainer)
    assert prediction is not None and prediction.train_peak > 0
    assert "predicted to need about" in capsys.readouterr().out
    monkeypatch.setenv(memory.MEMORY_CHECK_ENV, "0")
    assert memory.warn_if_memory_short(cfg, trainer) is None


# --------------------------------------------------------------------------------------------
# The README table (``make memory-table``)
# --------------------------------------------------------------------------------------------
def readme_memory_table() -> list:
    from conftest import REPO

    return memory.text_between_markers(str(REPO / "README.md")).splitlines()


def test_the_readme_memory_table_has_a_row_for_every_registry_method():
    lines = readme_memory_table()
    assert lines[:2] == memory.readme_table_header()
    named = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert named == [memory.readme_row_name(m) for m in memory.table_methods()], \
        "the README's memory table is stale: run `make memory-table`"


@pytest.mark.slow
@pytest.mark.parametrize("key", ["coop", "gda"])
def test_the_readme_memory_table_is_what_the_generator_writes(key):
    """A few rows regenerated (each is four predictions at ViT-B/16 size): a change of the predictor
    that moves the numbers fails here until the table is regenerated."""
    assert memory.readme_table_row(METHODS[key]) in readme_memory_table(), \
        f"the README's memory table row of {key} is stale: run `make memory-table`"
