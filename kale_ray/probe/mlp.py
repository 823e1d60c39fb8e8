"""The probe: a one-hidden-layer MLP on standardised hidden states, and AUROC to judge it.

Features are standardised with the training split's mean and std (hidden states of different layers
differ in scale by orders of magnitude, and one learning rate must fit all layers). Training is
full-batch AdamW on the logistic loss with class weights, so an unbalanced label split does not
collapse the probe to the majority class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def auroc(scores: np.ndarray | list[float], labels: np.ndarray | list[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count half.
    Mann-Whitney U over average ranks; NaN when one class is absent."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class Probe:
    """A trained probe: the standardisation and the MLP's weights (numpy, so it pickles and saves)."""

    layer: int
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(known) of each row of `x` ([n, hidden])."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.std
        h = np.maximum(z @ self.weights["w1"].T + self.weights["b1"], 0.0)
        logits = h @ self.weights["w2"].T + self.weights["b2"]
        return 1.0 / (1.0 + np.exp(-logits[:, 0]))

    def save(self, path: Path) -> None:
        import io

        from kale_ray.artifacts import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, layer=np.array(self.layer), mean=self.mean, std=self.std, **self.weights)
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> Probe:
        from kale_ray import storage

        storage.fetch(path)
        data = np.load(Path(path))
        return cls(int(data["layer"]), data["mean"], data["std"], {k: data[k] for k in ("w1", "b1", "w2", "b2")})


def train_probe(x: np.ndarray, y: np.ndarray, layer: int, cfg: Any, seed: int) -> Probe:  # cfg: ProbeConfig
    import torch

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    mean = x.mean(0)
    std = x.std(0) + 1e-6
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], cfg.hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    pos = float(y.sum())
    pos_weight = torch.tensor((len(y) - pos) / pos if 0 < pos < len(y) else 1.0)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = loss_fn(net(xt)[:, 0], yt)
        loss.backward()
        opt.step()
    weights = {"w1": net[0].weight, "b1": net[0].bias, "w2": net[2].weight, "b2": net[2].bias}
    return Probe(layer, mean, std, {k: v.detach().numpy().copy() for k, v in weights.items()})
