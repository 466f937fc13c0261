"""How a generator is judged during training: L1, PSNR and SSIM on the fixed validation crops
(overall and inside the clouds), and the single score that selects the model to keep.

Every ``val_every`` steps the generator is scored on the validation blocks (never on training
pixels) by PSNR + 20 x SSIM inside the synthetic clouds (:func:`validation_score`); with
``keep_best`` (default) the saved model is the best-scoring one, and its step is
``training.selected_step`` in the metadata. Dropout is off during validation, so the figures
describe what users get.
"""

from __future__ import annotations

import math

import numpy as np

from .scaling import to_display

SCORE_CAP = 100.0    # per-crop figures above this (a perfect crop: infinite PSNR) count as this
SSIM_WEIGHT = 20.0   # in the selection score: a 0.05 SSIM gain counts as 1 dB of PSNR


def _mean(values: list) -> float:
    return float(np.mean([min(x, SCORE_CAP) for x in values])) if values else float("nan")


def validation_metrics(fake: np.ndarray, target: np.ndarray, known: np.ndarray, mask: np.ndarray) -> dict:
    """L1 (network space), PSNR and SSIM on display values (data range 1), over known pixels;
    ``psnr_masked``/``ssim_masked`` only over the known pixels inside the mask."""
    from ..metrics import psnr, ssim

    f, t = to_display(fake), to_display(target)
    l1s, ps, ss, pm, sm = [], [], [], [], []
    for i in range(f.shape[0]):
        k = known[i]
        if not k.any():
            continue
        l1s.append(float(np.abs(fake[i][:, k] - target[i][:, k]).mean()))
        ps.append(psnr(f[i], t[i], 1.0, mask=k))
        ss.append(ssim(f[i], t[i], 1.0, mask=k))
        km = k & mask[i]
        if km.sum() > 0:
            pm.append(psnr(f[i], t[i], 1.0, mask=km))
            sm.append(ssim(f[i], t[i], 1.0, mask=km))
    return {"l1": _mean(l1s), "psnr": _mean(ps), "ssim": _mean(ss), "psnr_masked": _mean(pm),
            "ssim_masked": _mean(sm)}


def validation_score(m: dict) -> float:
    """Model selection score: PSNR + 20 x SSIM inside the clouds (a 0.05 SSIM gain counts as 1 dB)."""
    p, s_ = m.get("psnr_masked", float("nan")), m.get("ssim_masked", float("nan"))
    return -math.inf if not (math.isfinite(p) and math.isfinite(s_)) else p + SSIM_WEIGHT * s_
