"""One in-process Tierline per attack module (see harness.py)."""
from __future__ import annotations

import pytest

from tests.attack.harness import Tierline


@pytest.fixture(scope="module")
def system_options(tmp_path_factory) -> dict:
    """Settings overrides for this module's system; a module may override this fixture."""
    return {}


@pytest.fixture(scope="module")
def system(tmp_path_factory, system_options):
    tierline = Tierline(tmp_path_factory.mktemp("attack"), **system_options)
    yield tierline
    tierline.stop()
