"""Temperature scaling (Guo et al., 2017): one scalar T, fitted on the validation split, that makes the
softmax's confidence match accuracy without changing any prediction. The bundle stores T."""

from __future__ import annotations

import logging
import math

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from posevit.core.precision import autocast
from posevit.data.store import LABELS, PIXELS, with_pixels

log = logging.getLogger(__name__)

# A temperature outside this range does not calibrate, it compensates: above 20 the softmax of typical logits is
# all but uniform, below 0.05 all but one-hot.
TEMPERATURE_RANGE = (0.05, 20.0)
NEAR_CHANCE = 2.0  # val accuracy under this multiple of chance: the model has not learned enough to calibrate


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


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = TEMPERATURE_RANGE
) -> float:
    """The T in `bounds` that minimises the negative log-likelihood of softmax(logits / T).

    LBFGS on log T finds the free minimum; the NLL is convex in 1/T, so the minimum over the range is the
    free one clamped to it (the same T as SciPy's bounded minimisation; a test checks). A model at chance
    has its free minimum at T -> infinity (uniform probabilities), a perfectly separated split at T -> 0
    (LBFGS stops where the NLL has flattened out to zero).
    """
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(nll)
    low, high = bounds
    free = float(log_t.detach().exp())
    return high if math.isnan(free) else min(max(free, low), high)


def calibration_warning(
    temperature: float, logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = TEMPERATURE_RANGE
) -> str | None:
    """Why temperature scaling cannot help this model (one line), or None when the fit means something."""
    accuracy = float((logits.argmax(1) == labels).float().mean())
    chance = 1 / logits.shape[1]
    if accuracy < NEAR_CHANCE * chance:
        return (
            f"temperature scaling cannot help: val accuracy {accuracy:.3f} is near chance ({chance:.3f}), so the "
            f"fitted T={temperature:g} only flattens the probabilities towards uniform; train longer or check the data"
        )
    if temperature >= bounds[1]:
        return (
            f"temperature scaling cannot help: T hit its upper bound {bounds[1]:g}, so the logits carry almost no "
            "signal on the validation split and the served probabilities are near uniform"
        )
    if accuracy == 1.0:
        return (
            f"temperature scaling cannot help: every validation image is right, so nothing limits how sharp the "
            f"probabilities may be and T={temperature:g} is where the fit stopped (a larger or harder validation "
            "split would calibrate)"
        )
    if temperature <= bounds[0]:
        return (
            f"temperature scaling cannot help: T hit its lower bound {bounds[0]:g}, so the validation split asks for "
            "sharper probabilities than a sane temperature gives (a larger or harder validation split would calibrate)"
        )
    return None


def calibrated_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fitted T as the bundle stores it (4 decimals), logged with the NLL it buys; a warning when it cannot help."""
    temperature = round(fit_temperature(logits, labels), 4)
    log.info(
        "temperature %.4f fitted on the validation split (NLL %.4f -> %.4f)",
        temperature,
        float(F.cross_entropy(logits, labels)),
        float(F.cross_entropy(logits / temperature, labels)),
    )
    warning = calibration_warning(temperature, logits, labels)
    if warning:
        log.warning(warning)
    return temperature
