#!/usr/bin/env python
"""What the checkpoint payload digest costs: saving and loading a large state dict with and without it.

    python bench/checkpoint_digest.py                  # a 300 MB state dict (ViT-B/16 is ~350 MB in fp32)
    python bench/checkpoint_digest.py --size-mb 50 --repeats 1

Prints the best of ``--repeats`` timings of: the digest alone for a few hashlib algorithms (the one
``save_checkpoint`` uses is marked), ``torch.save`` + fsync of the plain state, ``save_checkpoint``
(atomic write with the digest), ``torch.load`` of the file, and ``load_checkpoint`` (load + verify).
Results: bench/RESULTS.md, "Checkpoint digest".
"""
from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
import time
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dassl.utils.torchtools import DIGEST_ALGORITHM, load_checkpoint, payload_digest, save_checkpoint  # noqa: E402

ALGORITHMS = ("sha256", "sha1", "blake2b", "md5")


def make_state(size_mb: int) -> dict:
    """A checkpoint like a trainer's: a state dict of 3 MiB fp32 matrices plus an epoch."""
    per_tensor = 768 * 1024  # 3 MiB in fp32
    count = max(1, size_mb * 2**20 // (4 * per_tensor))
    generator = torch.Generator().manual_seed(0)
    weights = {f"blocks.{i}.weight": torch.randn(768, 1024, generator=generator) for i in range(count)}
    return {"state_dict": weights, "epoch": 1, "optimizer": None, "scheduler": None}


def best_of(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def plain_save(state: dict, path: str) -> None:
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp folder)")
    args = parser.parse_args(argv)

    state = make_state(args.size_mb)
    megabytes = sum(t.numel() * t.element_size() for t in state["state_dict"].values()) / 2**20
    print(f"state dict: {len(state['state_dict'])} tensors, {megabytes:.0f} MiB, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for algorithm in ALGORITHMS:
        seconds = best_of(args.repeats, lambda: payload_digest(state, algorithm))
        mark = "  (used)" if algorithm == DIGEST_ALGORITHM else ""
        print(f"digest {algorithm:8s} {seconds:7.3f} s  {megabytes / seconds:7.0f} MiB/s{mark}")
    print(f"hashlib: {ssl.OPENSSL_VERSION}")

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        plain_path = os.path.join(folder, "plain.pth")
        timings = {
            "torch.save + fsync (no digest)": best_of(args.repeats, lambda: plain_save(state, plain_path)),
            "save_checkpoint (atomic, digest)": best_of(args.repeats, lambda: save_checkpoint(dict(state), folder)),
        }
        saved = os.path.join(folder, "model.pth.tar-1")
        timings["torch.load (no check)"] = best_of(
            args.repeats, lambda: torch.load(saved, map_location="cpu", weights_only=True))
        timings["load_checkpoint (load + verify)"] = best_of(args.repeats, lambda: load_checkpoint(saved))
    for what, seconds in timings.items():
        print(f"{what:34s} {seconds:7.3f} s")


if __name__ == "__main__":
    main()
