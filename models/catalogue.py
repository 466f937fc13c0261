"""The models that ship in ``models/pretrained/``: list them, find one by name, describe one in words.

An analyst names a model by its file path or, for a shipped one, by its name (``cloud_removal_small``,
with or without ``.safetensors``). The Processing help and the model picker show what each shipped model
takes, what it was trained on and its held-out figures. All of it is read from the file's own metadata
(models/weights.py), so a description never drifts from the file it describes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ModelFileError
from .weights import SHIPPED_DIR, read_metadata

SUFFIX = ".safetensors"
#: what each task does, in an analyst's words
TASKS = {"cloud_removal": "cloud removal", "fusion": "multi-date fusion (quality network)",
         "fusion_segmentation": "land-cover segmentation (trained with the fusion network)",
         "segmentation": "segmentation", "registration_descriptor": "registration (CNN patch descriptor)"}
#: how metrics print: name -> (label, unit)
FIGURES = {"psnr": ("PSNR", " dB"), "ssim": ("SSIM", ""), "mae": ("MAE", ""), "sam": ("SAM", "°"),
           "sam_degrees": ("SAM", "°"), "miou": ("mIoU", "")}


@dataclass(frozen=True)
class ShippedModel:
    name: str      # the file name without .safetensors: what MODEL accepts
    path: str
    task: str
    summary: str   # bands, inputs, training data and held-out figures, in a few sentences


def shipped_models(tasks=None) -> list:
    """The shipped models (of ``tasks``, any when None), sorted by name."""
    models = []
    for filename in sorted(os.listdir(SHIPPED_DIR)) if os.path.isdir(SHIPPED_DIR) else []:
        if not filename.endswith(SUFFIX):
            continue
        path = os.path.join(SHIPPED_DIR, filename)
        try:
            meta = read_metadata(path)
        except (ImportError, ModelFileError) as exc:  # safetensors missing: still list the file
            models.append(ShippedModel(filename[:-len(SUFFIX)], path, "", f"metadata not readable here ({exc})"))
            continue
        if tasks is None or meta.task in tasks:
            models.append(ShippedModel(filename[:-len(SUFFIX)], path, meta.task, describe(meta)))
    return models


def resolve_model(value: str) -> str:
    """The model file ``value`` names: an existing file, or the name of a shipped model."""
    value = str(value).strip()
    if os.path.isfile(value):
        return value
    name = os.path.basename(value)
    shipped = os.path.join(SHIPPED_DIR, name if name.endswith(SUFFIX) else name + SUFFIX)
    if os.sep not in value and "/" not in value and os.path.isfile(shipped):
        return shipped
    names = ", ".join(m.name for m in shipped_models()) or "none"
    raise ModelFileError(f"Model '{value}' is neither a model file nor the name of a shipped model ({names}).")


def describe(meta) -> str:
    """A model's metadata as a few sentences an analyst reads before choosing it."""
    sentences = [what_it_does(meta), bands_text(meta)]
    trained_on = training_text(meta.training)
    if trained_on:
        sentences.append(f"Trained on: {trained_on}")
    figures = held_out_figures(meta.metrics)
    sentences.append("Held-out figures: " + "; ".join(figures) if figures else "No held-out figures recorded")
    return " ".join(s if s.endswith((".", "…")) else s + "." for s in sentences)


def what_it_does(meta) -> str:
    text = TASKS.get(meta.task, meta.task.replace("_", " "))
    extras = list(meta.extra_channels)
    needs = []
    if "cloud_mask" in extras:
        needs.append("a cloud mask")
    kinds = meta.training.get("guide_kinds") or {}
    if kinds.get("optical"):
        needs.append("other dates as guides")
    if kinds.get("radar") or (not kinds and any(e.startswith("guide:radar") for e in extras)):
        needs.append("Sentinel-1 radar guides")
    return f"{text[0].upper()}{text[1:]} ({meta.architecture})" + (f"; needs {' and '.join(needs)}" if needs else "")


def bands_text(meta) -> str:
    bands = ", ".join(map(str, meta.bands))
    if meta.training.get("any_band_count"):
        return f"Trained on the bands {bands}; takes any band count"
    return f"Input bands, in this order: {bands}"


def training_text(training: dict, limit: int = 320) -> str:
    """What the model saw: its own summary, else the data folder and labels it names."""
    text = training.get("data_summary") or ""
    if not text and training.get("data_folder"):
        text = f"{training['data_folder']}" + (f" with labels {training['labels']}" if training.get("labels") else "")
    if not text and training.get("fusion_model"):
        text = f"saved with {training['fusion_model']} (the same training)"
    if not text and training.get("not_used"):
        text = f"{training.get('n_training_images', 'several')} images; not used: {training['not_used']}"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def held_out_figures(metrics: dict, groups: int = 2, per_group: int = 4) -> list:
    """The first held-out figures of ``metrics`` as short lines (the model's own rows before baselines')."""
    found = []

    def walk(node: dict, path: tuple) -> None:
        numbers = {k: v for k, v in node.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k != "n"}
        if numbers:
            found.append((path, dict(sorted(numbers.items(), key=lambda kv: list(FIGURES).index(kv[0])
                                            if kv[0] in FIGURES else len(FIGURES)))))
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, path + (key,))

    for key, value in metrics.items():
        if "held" in key.lower():
            if isinstance(value, dict):
                walk(value, ())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                found.append(((), {key: value}))
    found.sort(key=lambda entry: not any("model" in part.lower() for part in entry[0]))  # stable
    return [(", ".join(path) + ": " if path else "") + ", ".join(figure(k, v) for k, v in list(numbers.items())
                                                                  [:per_group]) for path, numbers in found[:groups]]


def figure(name: str, value: float) -> str:
    label, unit = FIGURES.get(name, (name.replace("_", " "), ""))
    return f"{label} {value:.3g}{unit}"
