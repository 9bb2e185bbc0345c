"""Re-running a tests/integration module on Citus: ``from tests.integration.test_X import *`` in a module of
this directory, then ``not_on_citus(globals(), {...})`` for the tests that cannot hold there (each replaced, in
this module only, by a skipped test that says why; the original module's functions are left untouched)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest


def _skipped(name: str, reason: str) -> Callable[[], None]:
    @pytest.mark.skip(reason=f"not on Citus: {reason}")
    def test() -> None:  # pragma: no cover - skipped
        pass

    test.__name__ = test.__qualname__ = name
    return test


def not_on_citus(namespace: dict[str, Any], reasons: Mapping[str, str]) -> None:
    for name, reason in reasons.items():
        if name not in namespace:
            raise LookupError(f"no test {name} to leave out")
        namespace[name] = _skipped(name, reason)
