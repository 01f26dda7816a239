from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["compute_distance_matrix", "euclidean_squared_distance", "cosine_distance"]


def compute_distance_matrix(input1: torch.Tensor, input2: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """``[N, D] x [M, D] -> [N, M]``; ``euclidean`` is squared euclidean, ``cosine`` is 1 - cos."""
    if input1.dim() != 2 or input2.dim() != 2:
        raise ValueError(f"Expected 2-D inputs, got {input1.dim()}-D and {input2.dim()}-D")
    if input1.size(1) != input2.size(1):
        raise ValueError(f"Feature dims differ: {input1.size(1)} vs {input2.size(1)}")
    if metric == "euclidean":
        return euclidean_squared_distance(input1, input2)
    if metric == "cosine":
        return cosine_distance(input1, input2)
    raise ValueError(f"Unknown distance metric: {metric}. Please choose either 'euclidean' or 'cosine'")


def euclidean_squared_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    sq1 = input1.pow(2).sum(dim=1, keepdim=True)
    sq2 = input2.pow(2).sum(dim=1, keepdim=True)
    return sq1 + sq2.t() - 2 * input1 @ input2.t()


def cosine_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    return 1 - F.normalize(input1, p=2, dim=1) @ F.normalize(input2, p=2, dim=1).t()
