"""A fake Kiro upstream: real HTTP on 127.0.0.1, real event-stream frames, scripted faults.

No Django: asyncio, the stdlib and h11. See `server.FakeKiro` / `server.FakeKiroThread`,
the DSL in `script.Script`, the validator in `validate`, and the fixtures in `pytest_plugin`.
"""

from __future__ import annotations

from gateway.fakekiro.client import FakeKiroClient
from gateway.fakekiro.script import Script
from gateway.fakekiro.server import FakeKiro, FakeKiroThread, run
from gateway.fakekiro.state import Account, FakeState, RecordedRequest
from gateway.fakekiro.steps import Slicing
from gateway.fakekiro.validate import validate_generate_request

__all__ = [
    "Account",
    "FakeKiro",
    "FakeKiroClient",
    "FakeKiroThread",
    "FakeState",
    "RecordedRequest",
    "Script",
    "Slicing",
    "run",
    "validate_generate_request",
]
