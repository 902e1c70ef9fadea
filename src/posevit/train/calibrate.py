"""Temperature scaling (Guo et al., 2017): one scalar T, fitted on the validation split, that makes the
softmax's confidence match accuracy without changing any prediction. The bundle stores T."""

from __future__ import annotations

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from posevit.core.precision import autocast
from posevit.data.store import LABELS, PIXELS, with_pixels


@torch.no_grad()  # not inference_mode: the temperature fit takes gradients through these logits' division
def split_logits(
    model: nn.Module, split: datasets.Dataset, transform, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of every image of `split` through `model` in eval mode, as evaluate computes them."""
    device = next(model.parameters()).device
    model.eval()
    logits, labels = [], []
    with autocast(device):
        for batch in DataLoader(with_pixels(split, transform), batch_size=batch_size):
            logits.append(model(batch[PIXELS].to(device)).float().cpu())
            labels.append(batch[LABELS])
    return torch.cat(logits), torch.cat(labels)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the negative log-likelihood of softmax(logits / T) (LBFGS on log T)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(nll)
    return float(log_t.detach().exp())
