"""What the tests against a real engine (tests/llamacpp, tests/vllm) share."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str, require_env: str) -> NoReturn:
    """Skip, or fail where $REQUIRE_ENV=1 demands the real engine (CI), so tests never skip silently."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason} ({require_env}=1)", pytrace=False)
    pytest.skip(reason)
