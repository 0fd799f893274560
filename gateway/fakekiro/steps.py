"""The building blocks of a fake answer: steps, slicing, socket actions, and their encoding.

A step is one logical piece of an event-stream answer (a frame, a pause, a reset); `Script`
(script.py) composes them. Steps travel as JSON through the control API (`step_json` /
`step_from_json`) and are encoded into frames only when served (`encode_step`, spec §4).
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

SliceMode = Literal["frame", "whole", "fixed", "random"]
Transfer = Literal["chunked", "length"]


@dataclass(frozen=True, slots=True)
class EventStep:
    """One `event` frame (§4.7) with a JSON payload (or raw payload bytes)."""

    event_type: str
    payload: Mapping[str, Any] | bytes


@dataclass(frozen=True, slots=True)
class ExceptionStep:
    """One `exception` frame; payload `{"message": ...}` (§5)."""

    exception_type: str
    message: str


@dataclass(frozen=True, slots=True)
class ErrorStep:
    """One `error` frame; payload `{"message": ...}` (§5)."""

    error_code: str
    message: str


@dataclass(frozen=True, slots=True)
class CorruptStep:
    """A well-formed event frame with one CRC byte flipped (§4.6, §13.3 case 5)."""

    event_type: str
    payload: Mapping[str, Any] | bytes
    where: Literal["message_crc", "prelude_crc"] = "message_crc"


@dataclass(frozen=True, slots=True)
class RawStep:
    """Bytes written verbatim into the body (garbage, half frames)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PauseStep:
    """Sleep before the next write."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ResetStep:
    """Abort the connection with a TCP reset (SO_LINGER 0) after flushing what was written."""


@dataclass(frozen=True, slots=True)
class CloseStep:
    """Close the connection (FIN) without finishing the response body."""


Step = (
    EventStep
    | ExceptionStep
    | ErrorStep
    | CorruptStep
    | RawStep
    | PauseStep
    | ResetStep
    | CloseStep
)
FRAME_STEPS = (EventStep, ExceptionStep, ErrorStep, CorruptStep)


@dataclass(frozen=True, slots=True)
class Slicing:
    """How body bytes are cut into socket writes.

    `frame`: one write per frame; `whole`: everything between pauses in one write; `fixed`:
    writes of `size` bytes; `random`: writes of `size..max_size` bytes from a seeded RNG, so
    frames, preludes and multi-byte UTF-8 characters straddle writes reproducibly.
    """

    mode: SliceMode = "frame"
    size: int = 1
    max_size: int = 64
    seed: int = 0

    def cut(self, data: bytes, rng: random.Random) -> list[bytes]:
        """Split `data` into the writes this policy prescribes (frame mode handled by caller)."""
        if self.mode in ("frame", "whole") or not data:
            return [data] if data else []
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self.mode == "fixed":
                n = max(1, self.size)
            else:
                n = rng.randint(max(1, self.size), max(1, self.size, self.max_size))
            out.append(data[pos : pos + n])
            pos += n
        return out


# --- actions produced by rendering a script -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    data: bytes


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Abort:
    rst: bool = True


Action = Write | Sleep | Abort


def _payload_json(payload: Mapping[str, Any] | bytes) -> dict[str, Any]:
    if isinstance(payload, bytes):
        return {"payload_b64": base64.b64encode(payload).decode()}
    return {"payload": dict(payload)}


def _payload_from(data: Mapping[str, Any]) -> Mapping[str, Any] | bytes:
    if "payload_b64" in data:
        return base64.b64decode(data["payload_b64"])
    return dict(data.get("payload", {}))


def step_json(step: Step) -> dict[str, Any]:
    match step:
        case EventStep(event_type, payload):
            return {"type": "event", "event_type": event_type, **_payload_json(payload)}
        case ExceptionStep(exception_type, message):
            return {"type": "exception", "exception_type": exception_type, "message": message}
        case ErrorStep(error_code, message):
            return {"type": "error", "error_code": error_code, "message": message}
        case CorruptStep(event_type, payload, where):
            return {
                "type": "corrupt",
                "event_type": event_type,
                "where": where,
                **_payload_json(payload),
            }
        case RawStep(data):
            return {"type": "raw", "b64": base64.b64encode(data).decode()}
        case PauseStep(seconds):
            return {"type": "pause", "seconds": seconds}
        case ResetStep():
            return {"type": "reset"}
        case CloseStep():
            return {"type": "close"}
    raise TypeError(f"unknown step {step!r}")


def step_from_json(data: Mapping[str, Any]) -> Step:
    kind = data.get("type")
    if kind == "event":
        return EventStep(str(data["event_type"]), _payload_from(data))
    if kind == "exception":
        return ExceptionStep(str(data["exception_type"]), str(data.get("message", "")))
    if kind == "error":
        return ErrorStep(str(data["error_code"]), str(data.get("message", "")))
    if kind == "corrupt":
        return CorruptStep(
            str(data.get("event_type", "assistantResponseEvent")),
            _payload_from(data),
            data.get("where", "message_crc"),
        )
    if kind == "raw":
        return RawStep(base64.b64decode(data["b64"]))
    if kind == "pause":
        return PauseStep(float(data["seconds"]))
    if kind == "reset":
        return ResetStep()
    if kind == "close":
        return CloseStep()
    raise ValueError(f"unknown step type {kind!r}")


def encode_step(step: Step) -> bytes:
    """Encode one frame step with the project's event-stream encoder (§4)."""
    from gateway.protocol import eventstream

    match step:
        case EventStep(event_type, payload):
            return eventstream.encode_event(event_type, payload)
        case ExceptionStep(exception_type, message):
            return eventstream.encode_exception(exception_type, message)
        case ErrorStep(error_code, message):
            return eventstream.encode_error(error_code, message)
        case CorruptStep(event_type, payload, where):
            frame = bytearray(eventstream.encode_event(event_type, payload))
            index = len(frame) - 1 if where == "message_crc" else 11
            frame[index] ^= 0xFF
            return bytes(frame)
        case RawStep(data):
            return data
    raise TypeError(f"{step!r} is not a frame")
