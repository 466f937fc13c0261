"""Setting checks name the setting and the allowed values (engine only)."""

from types import SimpleNamespace

import pytest

from cloudfree.models.checks import at_least, one_of
from cloudfree.models.errors import InputError


def test_one_of_and_at_least():
    one_of("gan mode", "lsgan", ("vanilla", "lsgan"))
    with pytest.raises(InputError, match="Unknown gan mode 'wgan': use vanilla, lsgan."):
        one_of("gan mode", "wgan", ("vanilla", "lsgan"))
    at_least(SimpleNamespace(steps=1, seed=0), ("steps",), 1)
    at_least(SimpleNamespace(steps=1, seed=0), ("seed",), 0)
    with pytest.raises(InputError, match="The setting steps must be at least 1; it is 0."):
        at_least(SimpleNamespace(steps=0), ("steps",))
