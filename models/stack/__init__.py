"""A stack of dates of one place, made ready for cloud removal, and the report of the cloud-free chain.

The Processing model "Cloud-free image from a stack" (processing_provider/chains/) detects the target
date's clouds, then hands the other dates here, because a model cannot loop over a list of layers:

- :func:`prepare_dates` with :class:`PrepareOptions` -> a :class:`PreparedLayer` per layer: each other
  date (and radar layer) registered onto the target (or placed by its georeferencing when registration
  is impossible), and each optical date's clouds detected on the target grid; :func:`save_summary`
  records what was done as JSON;
- :func:`chain_summary` and :func:`write_chain_report`: what every step did and a check of the cloud-free
  image against the target (pixels changed inside and outside the mask), as JSON or HTML.

It composes the public APIs of ``detection`` and ``registration``; it adds no method of its own.
"""

from .prepare import REGISTRATION_MODES, PreparedLayer, PrepareOptions, prepare_dates, save_summary
from .report import chain_summary, write_chain_report

__all__ = ["REGISTRATION_MODES", "PreparedLayer", "PrepareOptions", "prepare_dates", "save_summary",
           "chain_summary", "write_chain_report"]
