"""A controllable data source shared by the race and lifecycle suites."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio


class Fetcher:
    """Records calls, blocks on a gate while held, can raise; counts concurrency and cancels.

    A fetch's result is ``"<key>:<n>"``, ``n`` counting the calls made for that
    key, so a value tells which computation produced it.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.per_key: Counter[Any] = Counter()
        self.gate: anyio.Event | None = None
        self.error: Exception | None = None
        self.running = 0
        self.max_running = 0
        self.cancelled = 0

    def hold(self) -> anyio.Event:
        """Calls starting from now block until the returned gate is set."""
        self.gate = anyio.Event()
        return self.gate

    def release(self) -> None:
        """Let every call blocked on the current gate go on; later calls do not block."""
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.set()

    async def __call__(self, key: Any) -> Any:
        self.calls.append(key)
        self.per_key[key] += 1
        n = self.per_key[key]
        gate, error = self.gate, self.error
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await anyio.lowlevel.checkpoint()
            if gate is not None:
                await gate.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if error is not None:
            raise error
        return f"{key}:{n}"
