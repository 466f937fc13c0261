"""Checks of settings an analyst chooses, each failing with an :class:`InputError` that names the setting."""

from __future__ import annotations

from typing import Iterable

from .errors import InputError


def one_of(what: str, value, choices: Iterable) -> None:
    """``value`` must be one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise InputError(f"Unknown {what} '{value}': use {', '.join(map(str, choices))}.")


def at_least(settings, names: Iterable[str], minimum: int = 1) -> None:
    """Every attribute ``names`` of ``settings`` must be a number of at least ``minimum``."""
    for name in names:
        value = getattr(settings, name)
        if int(value) < minimum:
            raise InputError(f"The setting {name} must be at least {minimum}; it is {value}.")
