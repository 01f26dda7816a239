"""dassl.utils: tools, logger, meters, registry, metrics, evaluator."""

from __future__ import annotations

import io
import os
import random
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from dassl.config import get_cfg_default
from dassl.utils import (
    AverageMeter,
    Logger,
    MetricMeter,
    Registry,
    check_availability,
    check_isfile,
    count_num_param,
    get_most_similar_str_to_a_from_b,
    listdir_nohidden,
    mkdir_if_missing,
    read_image,
    read_json,
    set_random_seed,
    setup_logger,
    tolist_if_not,
    write_json,
)
from numerics import assert_close


# ----------------------------------------------------------------------------- tools
def test_json_roundtrip_creates_parent_and_indents(tmp_path):
    path = tmp_path / "a" / "b" / "split.json"
    write_json({"train": [["x.jpg", 0, "cat"]]}, str(path))
    assert read_json(str(path)) == {"train": [["x.jpg", 0, "cat"]]}
    assert path.read_text().startswith('{\n    "train"')


def test_mkdir_if_missing_is_idempotent(tmp_path):
    target = tmp_path / "x" / "y"
    mkdir_if_missing(str(target))
    mkdir_if_missing(str(target))
    assert target.is_dir()


def test_check_isfile_warns_for_missing(tmp_path):
    existing = tmp_path / "f.txt"
    existing.write_text("x")
    assert check_isfile(str(existing))
    with pytest.warns(UserWarning, match="nope.txt"):
        assert not check_isfile(str(tmp_path / "nope.txt"))


def test_listdir_nohidden(tmp_path):
    for name in ["b", "a", ".hidden", "c"]:
        (tmp_path / name).mkdir()
    assert listdir_nohidden(str(tmp_path), sort=True) == ["a", "b", "c"]
    assert sorted(listdir_nohidden(str(tmp_path))) == ["a", "b", "c"]


def test_read_image_rgb_and_clear_errors(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (5, 4), 128).save(path)
    img = read_image(str(path))
    assert img.mode == "RGB" and img.size == (5, 4)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(OSError, match="broken.jpg"):
        read_image(str(broken))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(str(tmp_path / "missing.jpg"))


def test_check_availability_names_choices_and_closest():
    check_availability("CoOp", ["CoOp", "CoCoOp"])
    with pytest.raises(ValueError) as exc:
        check_availability("CoOpp", ["CoOp", "GOPro"])
    msg = str(exc.value)
    assert "CoOpp" in msg and "GOPro" in msg and "do you mean [CoOp]" in msg


def test_most_similar_ties_go_to_later_candidate():
    assert get_most_similar_str_to_a_from_b("ab", ["ax", "ay"]) == "ay"
    assert get_most_similar_str_to_a_from_b("sgd", ["adam", "sgd", "rmsprop"]) == "sgd"


def test_tolist_if_not_wraps_tuples_whole():
    assert tolist_if_not("a") == ["a"]
    assert tolist_if_not(["a"]) == ["a"]
    assert tolist_if_not(("a", "b")) == [("a", "b")]


def test_set_random_seed_reproduces_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    set_random_seed(3)
    first = draw()
    set_random_seed(3)
    assert draw() == first


def test_count_num_param():
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    assert count_num_param(model) == 8
    assert count_num_param(params=[{"params": model.weight}, model.bias]) == 8
    with pytest.raises(ValueError):
        count_num_param()


# ----------------------------------------------------------------------------- logger
@pytest.fixture
def restore_stdout():
    saved = sys.stdout
    yield
    if sys.stdout is not saved:
        sys.stdout.close()
    sys.stdout = saved


def test_setup_logger_tees_and_never_overwrites(tmp_path, restore_stdout, capsys):
    setup_logger(str(tmp_path))
    print("first run")
    sys.stdout.flush()
    sys.stdout.close()
    assert (tmp_path / "log.txt").read_text() == "first run\n"

    sys.stdout = sys.stdout.console  # undo the first setup_logger, as a new process would start
    setup_logger(str(tmp_path))
    print("second run")
    sys.stdout.flush()
    logs = sorted(p.name for p in tmp_path.iterdir())
    assert logs[0] == "log.txt" and len(logs) == 2
    assert logs[1].startswith("log.txt-") and len(logs[1]) == len("log.txt-2024-01-01-00-00-00")
    assert (tmp_path / logs[1]).read_text() == "second run\n"
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    assert "second run" in capsys.readouterr().out


def test_setup_logger_explicit_file_and_none(tmp_path, restore_stdout):
    before = sys.stdout
    setup_logger(None)
    assert sys.stdout is before
    setup_logger(str(tmp_path / "sub" / "train.log"))
    print("x")
    sys.stdout.flush()
    assert (tmp_path / "sub" / "train.log").read_text() == "x\n"


def test_log_file_holds_each_line_as_soon_as_it_is_printed(tmp_path, restore_stdout):
    setup_logger(str(tmp_path))
    log = tmp_path / "log.txt"
    print("epoch [1/2] batch [5/10]")
    assert log.read_text() == "epoch [1/2] batch [5/10]\n"  # no flush, no close: a kill now loses nothing
    print("half a line", end="")
    print(" and its end")
    assert log.read_text().endswith("half a line and its end\n")


def test_logger_forwards_unknown_attributes_to_console(tmp_path):
    console = io.StringIO()
    saved = sys.stdout
    sys.stdout = console
    try:
        logger = Logger(str(tmp_path / "l.txt"))
    finally:
        sys.stdout = saved
    assert logger.isatty() is False  # StringIO.isatty, forwarded
    logger.write("hello")
    logger.flush()
    logger.close()
    assert console.getvalue() == "hello" and (tmp_path / "l.txt").read_text() == "hello"


def test_muted_logger_writes_nothing_to_console():
    console = io.StringIO()
    saved = sys.stdout
    sys.stdout = console
    try:
        logger = Logger(None, mute=True)
    finally:
        sys.stdout = saved
    logger.write("quiet")
    logger.flush()
    assert console.getvalue() == ""


# ----------------------------------------------------------------------------- meters
def test_average_meter_plain_and_ema():
    meter = AverageMeter()
    meter.update(torch.tensor(2.0))
    meter.update(4, n=3)
    assert meter.val == 4 and meter.count == 4 and meter.sum == 14 and meter.avg == 3.5
    ema = AverageMeter(ema=True)
    ema.update(10)
    ema.update(20)
    assert_close(ema.avg, (0 * 0.9 + 1.0) * 0.9 + 2.0, what="EMA")
    meter.reset()
    assert (meter.val, meter.avg, meter.sum, meter.count) == (0, 0, 0, 0)


def test_metric_meter_str_and_errors():
    losses = MetricMeter()
    losses.update({"loss": torch.tensor(1.0), "acc": 50.0})
    losses.update(None)
    losses.update({"loss": 3.0, "acc": 100.0})
    assert str(losses) == "loss 3.0000 (2.0000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError):
        losses.update([1.0])
    tabbed = MetricMeter(delimiter="\t")
    tabbed.update({"a": 1.0, "b": 2.0})
    assert str(tabbed) == "a 1.0000 (1.0000)\tb 2.0000 (2.0000)"


# ----------------------------------------------------------------------------- registry
def test_registry_decorator_direct_and_errors():
    reg = Registry("THING")

    @reg.register()
    class Alpha:
        pass

    def beta():
        pass

    reg.register(beta)
    assert reg.get("Alpha") is Alpha and reg.get("beta") is beta
    assert reg.registered_names() == ["Alpha", "beta"]
    with pytest.raises(KeyError, match="Alpha"):
        reg.register(Alpha)
    reg.register(Alpha, force=True)
    with pytest.raises(KeyError, match="Gamma"):
        reg.get("Gamma")


# ----------------------------------------------------------------------------- metrics
def test_compute_accuracy_topk_and_tuple_output():
    from dassl.metrics import compute_accuracy

    output = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 1, 0, 0])
    top1, top2 = compute_accuracy(output, target, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == 50.0 and top2.item() == 75.0
    assert compute_accuracy((output, None), target)[0].item() == 50.0


# ----------------------------------------------------------------------------- evaluator
def _cfg(**test_opts):
    cfg = get_cfg_default()
    for k, v in test_opts.items():
        setattr(cfg.TEST, k, v)
    return cfg


def test_classification_printed_block(capsys):
    from dassl.evaluation import build_evaluator

    evaluator = build_evaluator(_cfg(), lab2cname={0: "a", 1: "b"})
    evaluator.reset()
    # 3 of 4 correct
    evaluator.process(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1]))
    evaluator.process(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([1, 1]))
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert out == (
        "Loading evaluator: Classification\n"
        "=> result\n* total: 4\n* correct: 3\n* accuracy: 75.0%\n* error: 25.0%\n* macro_f1: 73.3%\n"
    )
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == 75.0 and results["error_rate"] == 25.0


def test_classification_per_class_and_cmat(tmp_path, capsys):
    from dassl.evaluation import Classification

    cfg = _cfg(PER_CLASS_RESULT=True, COMPUTE_CMAT=True)
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = Classification(cfg, lab2cname={0: "cat", 1: "dog"})
    scores = torch.zeros(1001, 2)
    scores[:, 0] = 1.0  # everything predicted as class 0
    labels = torch.zeros(1001, dtype=torch.long)
    labels[:1] = 1
    evaluator.process(scores, labels)
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,001\n* correct: 1,000\n" in out
    assert "=> per-class result\n* class: 0 (cat)\ttotal: 1,000\tcorrect: 1,000\tacc: 100.0%\n" in out
    assert "* class: 1 (dog)\ttotal: 1\tcorrect: 0\tacc: 0.0%\n* average: 50.0%\n" in out
    assert results["perclass_accuracy"] == 50.0
    assert f"Confusion matrix is saved to {tmp_path / 'cmat.pt'}" in out
    assert (tmp_path / "cmat.pt").is_file()
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(cfg)


def test_build_evaluator_unknown_name():
    from dassl.evaluation import build_evaluator

    with pytest.raises(ValueError, match="Classification"):
        build_evaluator(_cfg(EVALUATOR="Classificaton"))


# ----------------------------------------------------------------------------- distributed
def test_distributed_helpers_are_noops_in_a_single_process(monkeypatch):
    from dassl.utils import distributed as D
    from trainers.distributed import gather_with_grad

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert D.init_distributed_from_env() is False
    assert (D.is_distributed(), D.get_rank(), D.get_world_size(), D.is_main_process()) == (False, 0, 1, True)
    t = torch.arange(3.0, requires_grad=True)
    assert D.all_gather_tensor(t) is t and gather_with_grad(t) is t
    D.all_reduce_mean_([t.detach()])
    D.broadcast_module_(torch.nn.Linear(1, 1))
    D.barrier()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.init_distributed_from_env() is False


def test_init_distributed_from_env_explains_missing_vars(monkeypatch):
    from dassl.utils import distributed as D

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(RuntimeError, match="RANK.*torchrun"):
        D.init_distributed_from_env()


def _distributed_worker(rank: int, world_size: int, tmpdir: str) -> None:
    """Runs in each of 2 spawned gloo processes; any failed assert fails the parent test."""
    import os.path as osp

    import torch.distributed as dist

    from dassl.engine import TrainerBase
    from dassl.evaluation import Classification
    from dassl.utils import distributed as D
    from dassl.utils import save_checkpoint
    from trainers.distributed import all_reduce_mean_ as trainers_all_reduce_mean_
    from trainers.distributed import gather_with_grad

    dist.init_process_group("gloo", init_method=f"file://{osp.join(tmpdir, 'store')}", rank=rank, world_size=world_size)
    try:
        assert D.is_distributed() and D.get_rank() == rank and D.get_world_size() == 2
        assert D.is_main_process() == (rank == 0)

        # variable-size gather, rank order preserved
        local = torch.full((3 if rank == 0 else 1, 2), float(rank))
        gathered = D.all_gather_tensor(local)
        assert gathered.shape == (4, 2) and gathered[:3].eq(0).all() and gathered[3].eq(1).all()

        # autograd-aware gather: each rank's loss weights the gathered rows by (rank + 1)
        x = torch.full((2, 2), float(rank + 1), requires_grad=True)
        everything = gather_with_grad(x)  # the trainers' gather (the engine needs none)
        assert everything[:2].eq(1).all() and everything[2:].eq(2).all()
        ((rank + 1) * everything).sum().backward()
        assert x.grad.eq(3.0).all()  # 1 + 2: both ranks' losses used this rank's rows

        values = [torch.tensor([2.0 * rank]), torch.tensor([10.0 + rank])]
        D.all_reduce_mean_(values)
        assert values[0].item() == 1.0 and values[1].item() == 10.5
        trainer_values = [torch.tensor([2.0 * rank]), torch.tensor([10.0 + rank])]
        trainers_all_reduce_mean_(trainer_values)  # the trainers' own copy (ProGrad's gradients)
        assert trainer_values[0].item() == 1.0 and trainer_values[1].item() == 10.5

        # register_model broadcasts rank 0's weights; model_update averages gradients
        torch.manual_seed(100 + rank)
        model = torch.nn.Linear(2, 1, bias=False)
        trainer = TrainerBase()
        trainer.register_model("m", model, torch.optim.SGD(model.parameters(), lr=1.0))
        weights = D.all_gather_tensor(model.weight.detach())
        assert torch.equal(weights[0], weights[1])
        before = model.weight.detach().clone()
        model.weight.grad = torch.full_like(model.weight, float(rank))  # mean over ranks = 0.5
        trainer.model_update()
        assert_close(model.weight.detach(), before - 0.5, what=f"rank {rank} weight after the averaged step")

        # the evaluator totals cover every rank's shard
        cfg = get_cfg_default()
        evaluator = Classification(cfg)
        labels = torch.tensor([0, 1, 1]) if rank == 0 else torch.tensor([0])
        scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 0]) if rank == 0 else torch.tensor([0]), 2).float()
        evaluator.process(scores, labels)
        results = evaluator.evaluate()
        assert evaluator._total == 4 and results["accuracy"] == 75.0

        # non-zero ranks: no log file and a muted stdout
        saved = sys.stdout
        setup_logger(osp.join(tmpdir, f"logs{rank}"))
        try:
            assert isinstance(sys.stdout, Logger) and sys.stdout.mute == (rank != 0)
            assert osp.isfile(osp.join(tmpdir, f"logs{rank}", "log.txt")) == (rank == 0)
        finally:
            sys.stdout.close()
            sys.stdout = saved

        # only rank 0 writes files
        path = save_checkpoint({"state_dict": model.state_dict(), "epoch": 1}, osp.join(tmpdir, "ckpt"))
        assert (path is not None) == (rank == 0)
        D.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_collectives(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_distributed_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["checkpoint", "model.pth.tar-1"]


# ----------------------------------------------------------------------------- model helpers
def _two_part_model():
    layers = [("backbone", torch.nn.Conv2d(3, 4, 3)), ("bn", torch.nn.BatchNorm2d(4)), ("fc", torch.nn.Linear(4, 2))]
    return torch.nn.Sequential(OrderedDict(layers))


def test_open_layers_helpers():
    from dassl.utils import open_all_layers, open_specified_layers

    model = _two_part_model()
    open_specified_layers(model, "fc")
    assert [p.requires_grad for p in model.parameters()] == [False, False, False, False, True, True]
    assert model.fc.training and not model.backbone.training
    with pytest.raises(ValueError, match="head"):
        open_specified_layers(model, ["head"])
    open_all_layers(model)
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training


def test_init_network_weights():
    from dassl.utils import init_network_weights

    model = _two_part_model()
    torch.nn.init.constant_(model.bn.weight, 5.0)
    init_network_weights(model, init_type="kaiming")
    assert model.bn.weight.eq(1).all() and model.fc.bias.eq(0).all()
    with pytest.raises(NotImplementedError, match="uniform"):
        init_network_weights(model, init_type="uniform")
