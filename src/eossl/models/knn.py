"""Weighted k-nearest-neighbour classification on frozen features (Wu et al., 2018; as in DINO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_scores(
    bank: torch.Tensor,
    bank_targets: torch.Tensor,
    query: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores ``[Q, C]`` of each query from its ``k`` most cosine-similar bank samples.

    Each neighbour votes with weight ``exp(similarity / temperature)``. ``bank_targets`` are class
    indices ``[N]`` (single-label) or a 0/1 matrix ``[N, C]`` (multi-label: the scores are then the
    weighted fraction of neighbours carrying each label). Scores are normalised to sum to 1 per query
    (single-label) or lie in [0, 1] (multi-label).
    """
    if len(bank) == 0:
        raise ValueError("kNN needs at least one labelled sample in the bank")
    k = min(k, len(bank))
    bank = F.normalize(bank.float(), dim=1)
    multilabel = bank_targets.ndim == 2
    votes = bank_targets.float() if multilabel else F.one_hot(bank_targets.long(), num_classes or -1).float()
    out = []
    for start in range(0, len(query), chunk):
        q = F.normalize(query[start : start + chunk].float(), dim=1)
        similarity, index = (q @ bank.T).topk(k, dim=1)
        weights = (similarity / temperature).softmax(dim=1)  # exp(s/t), normalised per query
        out.append(torch.einsum("qk,qkc->qc", weights, votes[index]))
    return torch.cat(out)


def knn_accuracy(
    bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor, query_labels: torch.Tensor, k: int = 20
) -> float:
    """Top-1 accuracy of weighted kNN classification."""
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    predicted = knn_scores(bank, bank_labels, query, k, num_classes=num_classes).argmax(dim=1)
    return float((predicted == query_labels.long()).float().mean())
