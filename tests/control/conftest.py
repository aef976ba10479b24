"""Helpers for the control tests: run a coroutine with a hard time limit (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

TEST_TIMEOUT = 20.0


def run_async(coro: Awaitable[T], timeout: float = TEST_TIMEOUT) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def run() -> Callable[[Awaitable[Any]], Any]:
    return run_async
