"""The training report: loss curves (the discriminator's real and fake halves apart), validation
curves, the per-pair held-out figures and (cloudy, generated, clear, mask) samples, as one
self-contained HTML page (:func:`..reports.write_report`)."""

from __future__ import annotations

import numpy as np

from ..reports import Section, display_image, new_figure, write_report

VALIDATION_CURVES = ("l1", "psnr", "ssim")
SAMPLE_KEYS = ("cloudy", "generated", "composite", "clear")


def _loss_figure(history: dict):
    fig = new_figure(10, 3.2)
    ax = fig.subplots(1, 2)
    s = history.get("step", [])
    ax[0].plot(s, history.get("loss_g_l1", []), lw=0.8)
    ax[0].set_title("generator L1 (network space)")
    ax[0].set_xlabel("step")
    ax[1].plot(s, history.get("loss_g_gan", []), lw=0.8, label="G GAN")
    ax[1].plot(s, history.get("loss_d", []), lw=0.8, label="D")
    for key, label in (("loss_d_real", "D real"), ("loss_d_fake", "D fake")):
        if len(history.get(key, [])) == len(s):
            ax[1].plot(s, history[key], lw=0.6, label=label)
    ax[1].legend()
    ax[1].set_title("adversarial losses")
    ax[1].set_xlabel("step")
    return fig


def _validation_figure(val: list):
    fig = new_figure(12, 3.2)
    ax = fig.subplots(1, len(VALIDATION_CURVES))
    vs = [v["step"] for v in val]
    for a, key in zip(ax, VALIDATION_CURVES):
        a.plot(vs, [v.get(key, float("nan")) for v in val], marker="o", ms=3)
        a.set_title(f"validation {key}")
        a.set_xlabel("step")
    return fig


def _sample_figure(sample: dict, rgb):
    keys = [k for k in SAMPLE_KEYS if k in sample]
    fig = new_figure(3 * (len(keys) + 1), 3.2)
    ax = fig.subplots(1, len(keys) + 1)
    for a, key in zip(ax, keys):
        a.imshow(display_image(sample[key], rgb), cmap="gray")
        a.set_title("generated in mask" if key == "composite" else key)
        a.axis("off")
    ax[-1].imshow(sample.get("mask", np.zeros(np.asarray(sample["clear"]).shape[1:])), cmap="gray", vmin=0, vmax=1)
    ax[-1].set_title("mask")
    ax[-1].axis("off")
    return fig


def held_out_table(held_out: list) -> str:
    """The per-pair held-out figures as a plain-text table."""
    head = (f"{'pair':<32} {'held out':<11} {'tiles':>5}  {'cloudy PSNR':>11} {'SSIM':>6}  "
            f"{'output PSNR':>11} {'SSIM':>6}")
    lines = [head, "-" * len(head)]
    for f in held_out:
        lines.append(f"{str(f['pair'])[:32]:<32} {f['held_out']:<11} {f['tiles']:>5}  {f['input_psnr']:>8.2f} dB "
                     f"{f['input_ssim']:>6.3f}  {f['psnr']:>8.2f} dB {f['ssim']:>6.3f}")
    return "\n".join(lines)


def report_html(history: dict, samples: list, path: str, *, rgb=(2, 1, 0),
                title: str = "CloudFree cloud removal training", held_out: list | None = None) -> str:
    """Self-contained HTML: loss curves, validation curves, per-pair held-out figures (``held_out``,
    :attr:`~.config.TrainResult.held_out`) and (cloudy, generated, clear) triptychs.

    ``rgb``: indices (0-based, in the model's band order) shown as red, green, blue; with fewer
    bands the first band is shown in grey. Needs matplotlib.
    """
    sections = [Section("Losses", figure=_loss_figure(history),
                        text="D real and D fake: the discriminator's loss on clear targets and on generated "
                             "images; D is their mean.")]
    val = history.get("val", [])
    intro = ""
    if val:
        sections.append(Section("Validation", figure=_validation_figure(val)))
        last = val[-1]
        intro = (f"Last validation (step {last['step']}): L1 {last.get('l1', float('nan')):.4f}, "
                 f"PSNR {last.get('psnr', float('nan')):.2f} dB, SSIM {last.get('ssim', float('nan')):.3f}")
    if held_out:
        sections.append(Section("Held-out figures per pair", preformatted=held_out_table(held_out),
                                text="PSNR and SSIM (display values, data range 1) of the cloudy input and of the "
                                     "output against the clear target, on pairs (or blocks of rows) training "
                                     "never saw."))
    if history.get("stopped_early"):
        intro += f" Stopped early at step {history['stopped_early']}."
    sections += [Section(f"Validation sample {i + 1}", figure=_sample_figure(smp, rgb))
                 for i, smp in enumerate(samples)]
    return write_report(path, title, sections, intro)
