"""How a generator is judged during training: L1, PSNR and SSIM on the fixed validation crops
(overall and inside the clouds), the single score that selects the model to keep and stops a run
early, and the per-pair held-out figures of the report.

Every ``val_every`` steps the generator is scored on the validation blocks or held-out pairs
(never on training pixels) by PSNR + 20 x SSIM inside the clouds, or over every pixel when the
validation crops have no mask (pairs without masks) (:func:`validation_score`); with
``keep_best`` (default) the saved model is the best-scoring one, and its step is
``training.selected_step`` in the metadata. Step 0 is a candidate only for generators that start
as a model in their own right (``generators.PRIOR_STARTS``: the unmixing fill, the matched copy),
so training is kept only when it beats that start; a pix2pix generator starts from noise. With ``early_stopping`` = P, a run stops once P
validations in a row have not beaten the best (:func:`validations_since_best`). Dropout is off
during validation, so the figures describe what users get.
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
    """Model selection score: PSNR + 20 x SSIM inside the clouds (a 0.05 SSIM gain counts as 1 dB);
    over every known pixel when the validation crops mark no cloud (pairs without masks)."""
    p, s_ = m.get("psnr_masked", float("nan")), m.get("ssim_masked", float("nan"))
    if not (math.isfinite(p) and math.isfinite(s_)):
        p, s_ = m.get("psnr", float("nan")), m.get("ssim", float("nan"))
    return -math.inf if not (math.isfinite(p) and math.isfinite(s_)) else p + SSIM_WEIGHT * s_


def validations_since_best(val: list, first_step: int = 1) -> int:
    """How many validations from ``first_step`` on came after the best-scoring one (the first of
    equal scores). ``first_step`` is 0 for generators whose start is a candidate (``PRIOR_STARTS``)."""
    scored = [validation_score(v) for v in val if v["step"] >= first_step]
    if not scored:
        return 0
    best = max(range(len(scored)), key=lambda i: (scored[i], -i))  # the first of equal scores
    return len(scored) - 1 - best


def pair_figures(fake: np.ndarray, x: np.ndarray, target: np.ndarray, known: np.ndarray,
                 mask: np.ndarray | None = None) -> dict:
    """PSNR and SSIM (display values, data range 1, known pixels) of the cloudy input (the first
    ``target.shape[1]`` channels of ``x``) and of the output against the clear target, averaged
    over the crops. ``mask`` (models that take one): the output is generated pixels inside it
    and the input outside, as inference writes it."""
    from ..metrics import psnr, ssim

    nb = target.shape[1]
    cloudy = x[:, :nb]
    output = fake if mask is None else np.where(mask[:, None], fake, cloudy)
    c, o, t = to_display(cloudy), to_display(output), to_display(target)
    figures = {"input_psnr": [], "input_ssim": [], "psnr": [], "ssim": []}
    for i in range(t.shape[0]):
        k = known[i]
        if not k.any():
            continue
        figures["input_psnr"].append(psnr(c[i], t[i], 1.0, mask=k))
        figures["input_ssim"].append(ssim(c[i], t[i], 1.0, mask=k))
        figures["psnr"].append(psnr(o[i], t[i], 1.0, mask=k))
        figures["ssim"].append(ssim(o[i], t[i], 1.0, mask=k))
    out = {key: _mean(v) for key, v in figures.items()}
    out["tiles"] = len(figures["psnr"])
    return out
