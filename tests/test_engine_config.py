"""dassl.config: the default tree, yacs merge semantics and error messages."""

from __future__ import annotations

import pytest
from yacs.config import CfgNode

from dassl.config import UnknownConfigKeyError, check_keys, clean_cfg, get_cfg_default


@pytest.mark.parametrize(
    "key, value",
    [
        ("VERSION", 1),
        ("OUTPUT_DIR", "./output"),
        ("RESUME", ""),
        ("SEED", -1),
        ("USE_CUDA", True),
        ("VERBOSE", True),
        ("INPUT.SIZE", (224, 224)),
        ("INPUT.INTERPOLATION", "bilinear"),
        ("INPUT.TRANSFORMS", ()),
        ("INPUT.PIXEL_MEAN", [0.485, 0.456, 0.406]),
        ("INPUT.PIXEL_STD", [0.229, 0.224, 0.225]),
        ("INPUT.RRCROP_SCALE", (0.08, 1.0)),
        ("INPUT.GN_MEAN", 0.0),
        ("INPUT.GB_K", 21),
        ("DATASET.NUM_SHOTS", -1),
        ("DATASET.VAL_PERCENT", 0.1),
        ("DATASET.SOURCE_DOMAINS", ()),
        ("DATALOADER.NUM_WORKERS", 4),
        ("DATALOADER.TRAIN_X.SAMPLER", "RandomSampler"),
        ("DATALOADER.TRAIN_X.N_INS", 16),
        ("DATALOADER.TRAIN_U.SAME_AS_X", True),
        ("DATALOADER.TEST.SAMPLER", "SequentialSampler"),
        ("DATALOADER.TEST.BATCH_SIZE", 32),
        ("MODEL.INIT_WEIGHTS", ""),
        ("MODEL.BACKBONE.PRETRAINED", True),
        ("MODEL.HEAD.HIDDEN_LAYERS", ()),
        ("MODEL.HEAD.DROPOUT", 0.0),
        ("OPTIM.NAME", "adam"),
        ("OPTIM.LR", 0.0003),
        ("OPTIM.WEIGHT_DECAY", 5e-4),
        ("OPTIM.SGD_DAMPNING", 0),
        ("OPTIM.SGD_NESTEROV", False),
        ("OPTIM.STEPSIZE", (-1,)),
        ("OPTIM.MAX_EPOCH", 10),
        ("OPTIM.WARMUP_EPOCH", -1),
        ("OPTIM.WARMUP_TYPE", "linear"),
        ("OPTIM.WARMUP_CONS_LR", 1e-5),
        ("OPTIM.WARMUP_RECOUNT", True),
        ("TRAIN.CHECKPOINT_FREQ", 0),
        ("TRAIN.PRINT_FREQ", 10),
        ("TRAIN.COUNT_ITER", "train_x"),
        ("TEST.EVALUATOR", "Classification"),
        ("TEST.SPLIT", "test"),
        ("TEST.FINAL_MODEL", "last_step"),
        ("TRAINER.NAME", ""),
        ("TRAINER.CDAC.CLASS_LR_MULTI", 10),
        ("TRAINER.DDAIG.CLAMP_MIN", -1.0),
        ("TRAINER.DOMAINMIX.TYPE", "crossdomain"),
        ("TRAINER.ENTMIN.LMDA", 1e-3),
        ("TRAINER.MIXMATCH.WEIGHT_U", 100.0),
        ("TRAINER.MIXMATCH.RAMPUP", 20000),
        ("TRAINER.FIXMATCH.STRONG_TRANSFORMS", ()),
    ],
)
def test_default_value_and_type(key, value):
    node = get_cfg_default()
    for part in key.split("."):
        node = node[part]
    assert node == value
    assert type(node) is type(value), f"{key}: {type(node)} != {type(value)}"


def test_default_tree_shape():
    cfg = get_cfg_default()
    assert isinstance(cfg, CfgNode)
    assert sorted(cfg.keys()) == sorted(
        ["VERSION", "OUTPUT_DIR", "RESUME", "SEED", "USE_CUDA", "VERBOSE", "INPUT", "DATASET", "DATALOADER",
         "MODEL", "OPTIM", "TRAIN", "TEST", "TRAINER"]
    )
    assert len(cfg.INPUT) == 21 and len(cfg.DATASET) == 11 and len(cfg.OPTIM) == 21
    assert sorted(cfg.TRAINER.keys()) == sorted(
        ["NAME", "MCD", "MME", "CDAC", "SE", "M3SDA", "DAEL", "CROSSGRAD", "DDAIG", "DAELDG", "DOMAINMIX",
         "ENTMIN", "MEANTEACHER", "MIXMATCH", "FIXMATCH"]
    )
    assert not cfg.is_new_allowed()


def test_get_cfg_default_returns_independent_copies():
    a = get_cfg_default()
    a.OPTIM.LR = 1.0
    a.INPUT.PIXEL_MEAN.append(9.0)
    b = get_cfg_default()
    assert b.OPTIM.LR == 0.0003 and len(b.INPUT.PIXEL_MEAN) == 3


def test_merge_from_file_literal_eval_and_tuple_conversion(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "INPUT:\n  SIZE: (32, 32)\n  INTERPOLATION: bicubic\n  TRANSFORMS: ['random_flip', 'normalize']\n"
        "OPTIM:\n  NAME: sgd\n  WARMUP_CONS_LR: 1e-5\n  LR: 0.002\n  STEPSIZE: [3, 6]\n"
        "MODEL:\n  BACKBONE:\n    NAME: ViT-B/16\n"
    )
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert cfg.INPUT.SIZE == (32, 32) and isinstance(cfg.INPUT.SIZE, tuple)
    assert cfg.INPUT.INTERPOLATION == "bicubic"
    assert cfg.INPUT.TRANSFORMS == ("random_flip", "normalize") and isinstance(cfg.INPUT.TRANSFORMS, tuple)
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and isinstance(cfg.OPTIM.WARMUP_CONS_LR, float)
    assert cfg.OPTIM.STEPSIZE == (3, 6)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"


def test_merge_from_file_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  LRR: 0.1\n")
    cfg = get_cfg_default()
    with pytest.raises(KeyError) as exc:
        cfg.merge_from_file(str(path))
    assert "OPTIM.LRR" in str(exc.value)


def test_client_nodes_made_with_plain_yacs_merge_from_files(tmp_path):
    from yacs.config import CfgNode as CN

    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CN()  # what every upstream client's extend_cfg does
    cfg.TRAINER.COOP.N_CTX = 16
    path = tmp_path / "coop.yaml"
    path.write_text("TRAINER:\n  COOP:\n    N_CTX: 4\n")
    cfg.merge_from_file(str(path))
    assert cfg.TRAINER.COOP.N_CTX == 4


def test_merge_from_file_type_mismatch(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  LR: 1\n")  # int onto a float key
    with pytest.raises(ValueError, match=r"(?s)Type mismatch.*OPTIM.LR"):
        get_cfg_default().merge_from_file(str(path))


def test_merge_from_list_decodes_values():
    cfg = get_cfg_default()
    cfg.merge_from_list(["OPTIM.MAX_EPOCH", "16", "USE_CUDA", "False", "DATASET.NAME", "base",
                         "INPUT.SIZE", "(64, 64)", "OPTIM.LR", "0.01"])
    assert cfg.OPTIM.MAX_EPOCH == 16 and cfg.USE_CUDA is False and cfg.DATASET.NAME == "base"
    assert cfg.INPUT.SIZE == (64, 64) and cfg.OPTIM.LR == 0.01


def test_merge_from_list_errors():
    cfg = get_cfg_default()
    with pytest.raises(AssertionError, match="odd"):
        cfg.merge_from_list(["OPTIM.LR"])
    with pytest.raises(AssertionError, match=r"OPTIM\.NOPE"):
        cfg.merge_from_list(["OPTIM.NOPE", "1"])
    with pytest.raises(ValueError, match="Type mismatch"):
        cfg.merge_from_list(["OPTIM.LR", "1"])


def test_client_extension_freeze_and_str():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CfgNode()
    cfg.TRAINER.COOP.N_CTX = 16
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.INPUT.TRANSFORMS = ["random_flip"]  # list onto a tuple key via assignment is allowed
    cfg.merge_from_list(["TRAINER.COOP.N_CTX", "4", "DATASET.SUBSAMPLE_CLASSES", "base"])
    cfg.freeze()
    assert cfg.TRAINER.COOP.N_CTX == 4 and cfg.DATASET.SUBSAMPLE_CLASSES == "base"
    with pytest.raises(AttributeError):
        cfg.OPTIM.LR = 0.1
    text = str(cfg)
    assert "  COOP:\n    N_CTX: 4" in text
    # keys sorted alphabetically at every level
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ")]
    assert top == sorted(top)
    clone = cfg.clone()
    assert clone.TRAINER.COOP.N_CTX == 4


def test_clean_cfg_keeps_only_name_and_trainer_node():
    cfg = get_cfg_default()
    clean_cfg(cfg, "FixMatch")
    assert sorted(cfg.TRAINER.keys()) == ["FIXMATCH", "NAME"]


def test_check_keys_names_every_unknown_key_with_the_closest_valid_ones():
    cfg = get_cfg_default()
    cfg.EXTRA = CfgNode(new_allowed=True)
    check_keys(cfg, ["OPTIM.LR", "EXTRA.ANYTHING.BELOW", "INPUT.SIZE.X"], "here")  # new_allowed; type errors are yacs'
    with pytest.raises(UnknownConfigKeyError) as error:
        check_keys(cfg, ["OPTIM.LR", "OPTIM.MAX_EPOCHS", "INPUT.SIZ", "NOPE.X"], "in a.yaml")
    assert str(error.value) == (
        "Unknown config key 'OPTIM.MAX_EPOCHS' (in a.yaml). Did you mean: OPTIM.MAX_EPOCH? "
        "Unknown config key 'INPUT.SIZ' (in a.yaml). Did you mean: INPUT.SIZE? "
        f"Unknown config key 'NOPE.X' (in a.yaml). Keys at the top level: {', '.join(sorted(cfg.keys()))}.")
