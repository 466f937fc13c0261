"""Cloud removal with a conditional GAN (pix2pix, Isola et al. 2017): training and inference.

Public API: :func:`train_cloud_removal` (with :class:`TrainConfig`, :class:`TrainingSource`) writes
a model file; :func:`remove_clouds` (with :class:`RemovalOptions`) applies one to a raster;
:func:`report_html` writes a training report. Modules: ``config`` (sizes, normalisation settings,
TrainConfig), ``scaling`` (per-image statistics, network space), ``sources`` and ``crops`` (training
data), ``synthetic`` (synthetic clouds), ``generators`` (network specs), ``checkpoints``,
``validation``, ``train``, ``prior`` (coarse fill), ``feathering``, ``infer``, ``report``.
"""

from .checkpoints import resolve_checkpoint
from .config import DEFAULT_NORMALIZATION, MODEL_SIZES, NORMALIZATION_SCHEME, TASK, TrainConfig, TrainResult
from .crops import CropSampler
from .feathering import feather_weights
from .generators import GENERATORS, build_generator, generator_hyperparameters, generator_spec
from .infer import RemovalOptions, remove_clouds
from .report import report_html
from .scaling import ModelScaling, PercentileMap, denormalize, image_statistics, model_scaling, normalize, to_display
from .sources import ROLES, TrainingSource
from .train import train_cloud_removal
from .validation import validation_metrics, validation_score

__all__ = [
    "CropSampler", "DEFAULT_NORMALIZATION", "GENERATORS", "MODEL_SIZES", "NORMALIZATION_SCHEME", "ROLES",
    "ModelScaling", "PercentileMap", "model_scaling",
    "RemovalOptions", "TASK", "TrainConfig", "TrainResult", "TrainingSource", "build_generator", "denormalize",
    "feather_weights", "generator_hyperparameters", "generator_spec", "image_statistics", "normalize",
    "remove_clouds", "report_html", "resolve_checkpoint", "to_display", "train_cloud_removal",
    "validation_metrics", "validation_score",
]
