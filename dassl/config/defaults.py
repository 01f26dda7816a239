"""The default configuration tree (every key a YAML file or ``KEY VALUE`` override may name).

Types are part of the contract: yacs refuses to override a key with a value of another type
(except list<->tuple and None), so ``OPTIM.LR`` must stay a float, ``INPUT.SIZE`` a tuple, etc.
"""

from __future__ import annotations

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["CfgNode", "_C"]


# The tree is plain yacs, as upstream: client code adds nodes with ``yacs.config.CfgNode`` and
# yacs refuses to merge a file into a node of another CfgNode class. Where a bad key came from is
# reported by the entry point (train.py names the file or the command-line option).
CfgNode = _YacsCfgNode
CN = CfgNode
_C = CN()

# ---------------------------------------------------------------- top level
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1
_C.USE_CUDA = True
_C.VERBOSE = True

# ---------------------------------------------------------------- INPUT
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

# ---------------------------------------------------------------- DATASET
_C.DATASET = CN()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False

# ---------------------------------------------------------------- DATALOADER
# N_DOMAIN / N_INS configured upstream's domain and class samplers, which this engine does not
# ship; the keys stay so that upstream config files still merge.
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# ---------------------------------------------------------------- MODEL
# Clients store the CLIP architecture in BACKBONE.NAME; the other keys configured upstream's
# SimpleNet and stay for config compatibility.
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

# ---------------------------------------------------------------- OPTIM
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0  # (sic) upstream spelling, kept for config compatibility
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1
_C.OPTIM.WARMUP_TYPE = "linear"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

# ---------------------------------------------------------------- TRAIN
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0
_C.TRAIN.PRINT_FREQ = 10
_C.TRAIN.COUNT_ITER = "train_x"  # upstream's TrainerXU only; kept for config compatibility
# Not upstream: stop every epoch after this many batches (0 = the whole loader). For bounded
# rehearsals and smoke runs at full size (tools/rehearsal.py); the schedulers see the shorter epoch.
_C.TRAIN.MAX_BATCHES = 0

# ---------------------------------------------------------------- TEST
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"
# Not upstream: evaluate only the first this-many test (or val) batches (0 = all), like TRAIN.MAX_BATCHES.
_C.TEST.MAX_BATCHES = 0

# ---------------------------------------------------------------- TRAINER
# Sub-nodes of the built-in DA/SSL trainers. Not used by the CLIP trainers, but every client run
# prints the whole config (clients do not call clean_cfg), so they are kept for log parity.
_C.TRAINER = CN()
_C.TRAINER.NAME = ""

_C.TRAINER.MCD = CN()
_C.TRAINER.MCD.N_STEP_F = 4

_C.TRAINER.MME = CN()
_C.TRAINER.MME.LMDA = 0.1

_C.TRAINER.CDAC = CN()
_C.TRAINER.CDAC.CLASS_LR_MULTI = 10
_C.TRAINER.CDAC.RAMPUP_COEF = 30
_C.TRAINER.CDAC.RAMPUP_ITRS = 1000
_C.TRAINER.CDAC.TOPK_MATCH = 5
_C.TRAINER.CDAC.P_THRESH = 0.95
_C.TRAINER.CDAC.STRONG_TRANSFORMS = ()

_C.TRAINER.SE = CN()
_C.TRAINER.SE.EMA_ALPHA = 0.999
_C.TRAINER.SE.CONF_THRE = 0.95
_C.TRAINER.SE.RAMPUP = 300

_C.TRAINER.M3SDA = CN()
_C.TRAINER.M3SDA.LMDA = 0.5
_C.TRAINER.M3SDA.N_STEP_F = 4

_C.TRAINER.DAEL = CN()
_C.TRAINER.DAEL.WEIGHT_U = 0.5
_C.TRAINER.DAEL.CONF_THRE = 0.95
_C.TRAINER.DAEL.STRONG_TRANSFORMS = ()

_C.TRAINER.CROSSGRAD = CN()
_C.TRAINER.CROSSGRAD.EPS_F = 1.0
_C.TRAINER.CROSSGRAD.EPS_D = 1.0
_C.TRAINER.CROSSGRAD.ALPHA_F = 0.5
_C.TRAINER.CROSSGRAD.ALPHA_D = 0.5

_C.TRAINER.DDAIG = CN()
_C.TRAINER.DDAIG.G_ARCH = ""
_C.TRAINER.DDAIG.LMDA = 0.3
_C.TRAINER.DDAIG.CLAMP = False
_C.TRAINER.DDAIG.CLAMP_MIN = -1.0
_C.TRAINER.DDAIG.CLAMP_MAX = 1.0
_C.TRAINER.DDAIG.WARMUP = 0
_C.TRAINER.DDAIG.ALPHA = 0.5

_C.TRAINER.DAELDG = CN()
_C.TRAINER.DAELDG.WEIGHT_U = 0.5
_C.TRAINER.DAELDG.CONF_THRE = 0.95
_C.TRAINER.DAELDG.STRONG_TRANSFORMS = ()

_C.TRAINER.DOMAINMIX = CN()
_C.TRAINER.DOMAINMIX.TYPE = "crossdomain"
_C.TRAINER.DOMAINMIX.ALPHA = 1.0
_C.TRAINER.DOMAINMIX.BETA = 1.0

_C.TRAINER.ENTMIN = CN()
_C.TRAINER.ENTMIN.LMDA = 1e-3

_C.TRAINER.MEANTEACHER = CN()
_C.TRAINER.MEANTEACHER.WEIGHT_U = 1.0
_C.TRAINER.MEANTEACHER.EMA_ALPHA = 0.999
_C.TRAINER.MEANTEACHER.RAMPUP = 5

_C.TRAINER.MIXMATCH = CN()
_C.TRAINER.MIXMATCH.WEIGHT_U = 100.0
_C.TRAINER.MIXMATCH.TEMP = 2.0
_C.TRAINER.MIXMATCH.MIXUP_BETA = 0.75
_C.TRAINER.MIXMATCH.RAMPUP = 20000

_C.TRAINER.FIXMATCH = CN()
_C.TRAINER.FIXMATCH.WEIGHT_U = 1.0
_C.TRAINER.FIXMATCH.CONF_THRE = 0.95
_C.TRAINER.FIXMATCH.STRONG_TRANSFORMS = ()
