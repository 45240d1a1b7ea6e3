"""A serializer whose ``loads`` (run on a SQLiteStore's worker thread) can be held."""

from __future__ import annotations

import threading
from typing import Any

from aiocache_swr import PickleSerializer

GATE_TIMEOUT = 30.0  # safety net only: a gate that is never opened fails the test


class GateSerializer(PickleSerializer):
    """Pickle, but ``loads`` (run on the database thread) can be held at a gate.

    ``entered`` is set when a held ``loads`` reaches the gate, ``left`` when it
    goes on (the gate opened, or the safety net ran out and failed the job).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.left = threading.Event()

    def loads(self, data: bytes) -> Any:
        if self.hold:
            self.entered.set()
            try:
                assert self.release.wait(GATE_TIMEOUT)
            finally:
                self.left.set()
        return super().loads(data)
