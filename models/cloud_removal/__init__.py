"""Cloud removal with a conditional GAN (pix2pix, Isola et al. 2017): training and inference.

Public API: :func:`train_cloud_removal` (with :class:`TrainConfig`, :class:`TrainingSource`) writes
a model file; :func:`remove_clouds` (with :class:`RemovalOptions`) applies one to a raster;
:func:`report_html` writes a training report. Modules: ``config`` (sizes, normalisation settings,
TrainConfig, the run's choices), ``scaling`` (per-image statistics, network space), ``pairs``
(cloudy/clear pairs from layer lists, a CSV file or a folder), ``sources`` and ``crops`` (training
data), ``synthetic`` (synthetic clouds), ``generators`` (network specs), ``checkpoints``,
``validation``, ``train``, ``prior`` (coarse fill), ``feathering``, ``infer``, ``report``.
"""

from .checkpoints import resolve_checkpoint
from .config import (DEFAULT_NORMALIZATION, GENERATOR_KINDS, MODEL_SIZES, NORMALIZATION_SCHEME, SCALINGS, TASK,
                     TrainConfig, TrainingChoices, TrainResult, resolve_choices)
from .crops import CropSampler
from .feathering import feather_weights
from .generators import GENERATORS, build_generator, generator_hyperparameters, generator_spec
from .infer import RemovalOptions, remove_clouds
from .pairs import PairFiles, match_layers, pair_sources, read_pairs
from .report import report_html
from .scaling import ModelScaling, PercentileMap, denormalize, image_statistics, model_scaling, normalize, to_display
from .sources import ROLES, TrainingSource
from .train import train_cloud_removal
from .validation import pair_figures, validation_metrics, validation_score

__all__ = [
    "CropSampler", "DEFAULT_NORMALIZATION", "GENERATORS", "GENERATOR_KINDS", "MODEL_SIZES", "NORMALIZATION_SCHEME",
    "ROLES", "SCALINGS", "ModelScaling", "PairFiles", "PercentileMap", "model_scaling",
    "RemovalOptions", "TASK", "TrainConfig", "TrainResult", "TrainingChoices", "TrainingSource", "build_generator",
    "denormalize", "feather_weights", "generator_hyperparameters", "generator_spec", "image_statistics",
    "match_layers", "normalize", "pair_figures", "pair_sources", "read_pairs", "remove_clouds", "report_html",
    "resolve_checkpoint", "resolve_choices", "to_display", "train_cloud_removal", "validation_metrics",
    "validation_score",
]
