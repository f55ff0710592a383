"""One rule for tests whose tool is missing: skip on a developer's machine, fail in CI.

CI (CI=true, set by .ci/run) installs every tool, so a skip there would hide a broken
install step; the run fails instead, with the reason.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str, *, required: bool | None = None) -> NoReturn:
    """Skip with `reason`, or fail when the tool is required (default: in CI)."""
    if in_ci() if required is None else required:
        pytest.fail(f"required here but missing: {reason}")
    pytest.skip(reason)
