"""Scenario DSL: what the fake answers to one upstream call (spec kiro-protocol §4, §5, §7.4).

A `Script` is an immutable value: a status, either a plain body (faults, JSON answers) or a
sequence of steps (event-stream frames, pauses, a reset), and delivery options (how the bytes
are sliced into socket writes, pacing, transfer encoding). Scripts add up with `+`:

    Script.text("Let me check.", chunks=3) + Script.tool_call("get_weather", {"city": "Paris"})

Steps hold logical events and are encoded only when served, so scripts travel as JSON through
the control API (`to_json` / `from_json`).
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from gateway.fakekiro import bodies
from gateway.fakekiro.steps import (
    FRAME_STEPS,
    Abort,
    Action,
    CloseStep,
    CorruptStep,
    ErrorStep,
    EventStep,
    ExceptionStep,
    PauseStep,
    RawStep,
    ResetStep,
    Sleep,
    SliceMode,
    Slicing,
    Step,
    Transfer,
    Write,
    encode_step,
    step_from_json,
    step_json,
)

_S = TypeVar("_S", bound="Script")


class _hybrid:
    """Bind to the instance when there is one, else to a fresh default `Script`."""

    def __init__(self, fn: Callable[..., Script]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Script | None, cls: type[Script]) -> Callable[..., Script]:
        target = obj if obj is not None else cls.text(_LOREM, chunks=16)

        def bound(*args: Any, **kwargs: Any) -> Script:
            return self.fn(target, *args, **kwargs)

        return bound


_LOREM = (
    "The quick brown fox jumps over the lazy dog. Grüße aus Köln — 你好世界 🚀. "
    "Pack my box with five dozen liquor jugs."
)


def _tool_use_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "tooluse_" + "".join(secrets.choice(alphabet) for _ in range(22))


def split_text(text: str, parts: int) -> list[str]:
    """Split `text` into `parts` non-empty pieces of near-equal character length."""
    parts = max(1, min(parts, len(text))) if text else 1
    if not text:
        return [""]
    size, extra = divmod(len(text), parts)
    out, pos = [], 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        out.append(text[pos : pos + n])
        pos += n
    return out


@dataclass(frozen=True, slots=True)
class Script:
    """One scripted upstream answer."""

    steps: tuple[Step, ...] = ()
    status: int = 200
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    slicing: Slicing | None = None
    pace: float | None = None
    first_byte_delay: float = 0.0
    transfer: Transfer | None = None
    label: str = field(default="", compare=False)

    # --- composition --------------------------------------------------------------------

    def __add__(self, other: Script) -> Script:
        if self.body is not None or other.body is not None:
            raise ValueError("a fault or JSON script cannot be combined with another script")
        return replace(
            self,
            steps=self.steps + other.steps,
            headers=self.headers + other.headers,
            slicing=other.slicing or self.slicing,
            pace=other.pace if other.pace is not None else self.pace,
            first_byte_delay=max(self.first_byte_delay, other.first_byte_delay),
            transfer=other.transfer or self.transfer,
            label=" + ".join(x for x in (self.label, other.label) if x),
        )

    @property
    def is_stream(self) -> bool:
        """Return True when this answer is an event stream rather than a plain body."""
        return self.body is None

    @property
    def frame_count(self) -> int:
        """Count the frames (events, exceptions, errors, corrupt frames) in the steps."""
        return sum(isinstance(s, FRAME_STEPS) for s in self.steps)

    # --- stream content -----------------------------------------------------------------

    @classmethod
    def empty(cls) -> Script:
        """Answer 200 with an empty event stream."""
        return cls(label="empty")

    @classmethod
    def event(cls, event_type: str, payload: Mapping[str, Any] | bytes) -> Script:
        """Emit one event frame of any type (unknown AWS-model events included, §5)."""
        return cls(steps=(EventStep(event_type, payload),), label=event_type)

    @classmethod
    def text(cls, text: str, *, chunks: int = 1) -> Script:
        """Emit `text` as `chunks` assistantResponseEvents."""
        steps = tuple(
            EventStep("assistantResponseEvent", {"content": piece})
            for piece in split_text(text, chunks)
        )
        return cls(steps=steps, label=f"text({len(text)} chars/{len(steps)})")

    @classmethod
    def thinking(cls, thought: str, answer: str = "", *, chunks: int = 1) -> Script:
        """Emit prompt-tag thinking inside text events (spec §6.5 shape)."""
        text = (
            f"<thinking>\n{thought}</thinking>\n\n{answer}"
            if answer
            else (f"<thinking>\n{thought}</thinking>")
        )
        return replace(cls.text(text, chunks=chunks), label="thinking")

    @classmethod
    def reasoning(
        cls,
        text: str = "",
        *,
        chunks: int = 1,
        signature: str | None = None,
        redacted: str | None = None,
    ) -> Script:
        """Emit native reasoningContentEvents (Z, §5/§6.6), signature on the last one."""
        steps: list[Step] = []
        if text:
            pieces = split_text(text, chunks)
            for i, piece in enumerate(pieces):
                payload: dict[str, Any] = {"text": piece}
                if signature is not None and i == len(pieces) - 1:
                    payload["signature"] = signature
                steps.append(EventStep("reasoningContentEvent", payload))
        elif signature is not None:
            steps.append(EventStep("reasoningContentEvent", {"signature": signature}))
        if redacted is not None:
            steps.append(EventStep("reasoningContentEvent", {"redactedContent": redacted}))
        return cls(steps=tuple(steps), label="reasoning")

    @classmethod
    def tool_call(
        cls,
        name: str,
        input: Mapping[str, Any] | str | None = None,
        *,
        fragments: int = 1,
        tool_use_id: str | None = None,
    ) -> Script:
        """Emit one tool call whose input JSON text is split into `fragments` toolUseEvents."""
        if input is None:
            raw = ""
        elif isinstance(input, str):
            raw = input
        else:
            raw = json.dumps(input, ensure_ascii=False, separators=(",", ":"))
        tid = tool_use_id or _tool_use_id()
        pieces = split_text(raw, fragments)
        steps = tuple(
            EventStep(
                "toolUseEvent",
                {"name": name, "toolUseId": tid, "input": piece, "stop": i == len(pieces) - 1},
            )
            for i, piece in enumerate(pieces)
        )
        return cls(steps=steps, label=f"tool_call({name})")

    @classmethod
    def context_usage(cls, percentage: float) -> Script:
        """Emit a contextUsageEvent."""
        return cls.event("contextUsageEvent", {"contextUsagePercentage": percentage})

    @classmethod
    def metering(cls, usage: float = 0.0169543708291874) -> Script:
        """Emit a meteringEvent (credits)."""
        return cls.event(
            "meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": usage}
        )

    @classmethod
    def metadata(
        cls,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        stop_reason: str | None = None,
    ) -> Script:
        """Emit a metadataEvent with tokenUsage (Z, §5)."""
        payload: dict[str, Any] = {
            "tokenUsage": {
                "uncachedInputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cacheReadInputTokens": cache_read,
                "cacheWriteInputTokens": cache_write,
            }
        }
        if stop_reason is not None:
            payload["stopReason"] = stop_reason
        return cls.event("metadataEvent", payload)

    @classmethod
    def exception(
        cls,
        exception_type: str = "ContentLengthExceededException",
        message: str = "Response exceeded the maximum allowed length",
    ) -> Script:
        """Emit an exception frame (default: the max-tokens one of §6.9)."""
        return cls(steps=(ExceptionStep(exception_type, message),), label=exception_type)

    @classmethod
    def error_frame(
        cls,
        error_code: str = "InternalServerException",
        message: str = "Encountered an unexpected error when processing the request, please try "
        "again.",
    ) -> Script:
        """Emit an error frame (§13.2 F6 by default)."""
        return cls(steps=(ErrorStep(error_code, message),), label=error_code)

    @classmethod
    def corrupt(
        cls,
        event_type: str = "assistantResponseEvent",
        payload: Mapping[str, Any] | bytes | None = None,
        *,
        where: Literal["message_crc", "prelude_crc"] = "message_crc",
    ) -> Script:
        """Emit a frame with a bad CRC, which decoders must skip (§4.6)."""
        body = payload if payload is not None else {"content": "CORRUPT"}
        return cls(steps=(CorruptStep(event_type, body, where),), label="corrupt")

    @classmethod
    def raw(cls, data: bytes) -> Script:
        """Write raw bytes into the stream body."""
        return cls(steps=(RawStep(data),), label="raw")

    @classmethod
    def pause(cls, seconds: float) -> Script:
        """Sleep between the surrounding frames."""
        return cls(steps=(PauseStep(seconds),), label=f"pause({seconds})")

    @classmethod
    def reset(cls) -> Script:
        """Reset the connection at this point of the stream."""
        return cls(steps=(ResetStep(),), label="reset")

    @classmethod
    def close(cls) -> Script:
        """Close the connection (FIN) at this point, leaving the body incomplete."""
        return cls(steps=(CloseStep(),), label="close")

    @classmethod
    def slow(cls, text: str = _LOREM, *, chunks: int = 20, pace: float = 0.05) -> Script:
        """Emit text as many events with `pace` seconds between writes."""
        return cls.text(text, chunks=chunks).paced(pace).with_usage()

    # --- modifiers ----------------------------------------------------------------------

    def with_usage(
        self,
        *,
        context_percentage: float = 1.25,
        credits: float = 0.0169543708291874,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> Script:
        """Append the usual tail: meteringEvent, contextUsageEvent, metadataEvent (§5)."""
        tail = Script.metering(credits) + Script.context_usage(context_percentage)
        if input_tokens is not None or output_tokens is not None:
            tail = tail + Script.metadata(
                input_tokens=input_tokens or 0, output_tokens=output_tokens or 0
            )
        return self + tail

    @_hybrid
    def reset_after(self, frames: int) -> Script:
        """Keep the first `frames` frames, then reset the connection.

        On the class (`Script.reset_after(3)`) it applies to a 16-event text stream.
        """
        return replace(self, steps=(*_first_frames(self.steps, frames), ResetStep()))

    @_hybrid
    def close_after(self, frames: int) -> Script:
        """Keep the first `frames` frames, then close the connection mid-body."""
        return replace(self, steps=(*_first_frames(self.steps, frames), CloseStep()))

    def then(self, other: Script) -> Script:
        """Return `self + other`."""
        return self + other

    def paced(self, seconds: float) -> Script:
        """Sleep `seconds` between writes."""
        return replace(self, pace=seconds)

    def sliced(
        self, mode: SliceMode = "random", *, size: int = 1, max_size: int = 64, seed: int = 0
    ) -> Script:
        """Override how the body is cut into socket writes."""
        return replace(self, slicing=Slicing(mode, size, max_size, seed))

    def delayed(self, seconds: float) -> Script:
        """Wait `seconds` before sending the response head."""
        return replace(self, first_byte_delay=seconds)

    def with_transfer(self, transfer: Transfer) -> Script:
        """Choose chunked or content-length framing for this answer."""
        return replace(self, transfer=transfer)

    def with_headers(self, **headers: str) -> Script:
        """Add response headers (underscores become dashes)."""
        extra = tuple((k.replace("_", "-"), v) for k, v in headers.items())
        return replace(self, headers=self.headers + extra)

    # --- plain bodies: faults and JSON --------------------------------------------------

    @classmethod
    def fault(
        cls,
        status: int,
        body: bytes | str | Mapping[str, Any] = b"",
        *,
        retry_after: str | int | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Script:
        """Answer `status` with `body` (bytes/str verbatim, a mapping as compact JSON)."""
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = bodies.json_body(body)
        extra = list((headers or {}).items())
        if retry_after is not None:
            extra.append(("retry-after", str(retry_after)))
        return cls(
            status=status,
            body=raw,
            headers=tuple(extra),
            content_type=content_type,
            label=f"fault({status})",
        )

    @classmethod
    def json(cls, obj: Any, *, status: int = 200) -> Script:
        """Answer with a JSON document (REST, MCP or token endpoints)."""
        return replace(cls.fault(status, bodies.json_body(obj)), label=f"json({status})")

    @classmethod
    def quota_exhausted(cls) -> Script:
        """402 MONTHLY_REQUEST_COUNT (§7.4)."""
        return cls.fault(402, bodies.QUOTA_MONTHLY)

    @classmethod
    def overage_exhausted(cls) -> Script:
        """402 OVERAGE_REQUEST_LIMIT_EXCEEDED (§7.4)."""
        return cls.fault(402, bodies.QUOTA_OVERAGE)

    @classmethod
    def bearer_invalid(cls, status: int = 403) -> Script:
        """401/403 with the bearer-invalid sentence (§7.4)."""
        return cls.fault(status, bodies.BEARER_INVALID)

    @classmethod
    def suspended(cls) -> Script:
        """403 account suspended (§7.4)."""
        return cls.fault(403, bodies.SUSPENDED)

    @classmethod
    def throttled(cls, *, retry_after: str | int | None = None) -> Script:
        """429 suspicious activity + temporary limits (§7.4)."""
        return cls.fault(429, bodies.THROTTLED, retry_after=retry_after)

    @classmethod
    def rate_limited(cls, *, retry_after: str | int | None = None) -> Script:
        """Plain 429 throttling, with or without Retry-After (§7.2 row 11)."""
        return cls.fault(429, bodies.RATE_LIMITED, retry_after=retry_after)

    @classmethod
    def improperly_formed(cls) -> Script:
        """400 Improperly formed request (§7.4)."""
        return cls.fault(400, bodies.IMPROPERLY_FORMED)

    @classmethod
    def content_length_exceeded(cls) -> Script:
        """400 CONTENT_LENGTH_EXCEEDS_THRESHOLD (§7.4)."""
        return cls.fault(400, bodies.CONTENT_LENGTH_EXCEEDED)

    @classmethod
    def input_too_long(cls) -> Script:
        """400 with "Input is too long" (§7.4)."""
        return cls.fault(400, bodies.INPUT_TOO_LONG)

    @classmethod
    def tool_use_result_mismatch(cls) -> Script:
        """400 TOOL_USE_RESULT_MISMATCH (§7.4 client validation)."""
        return cls.fault(400, bodies.TOOL_USE_RESULT_MISMATCH)

    @classmethod
    def tool_schema_invalid(cls) -> Script:
        """400 TOOL_SCHEMA_INVALID (§7.4 verbatim)."""
        return cls.fault(400, bodies.TOOL_SCHEMA_INVALID)

    @classmethod
    def profile_arn_required(cls) -> Script:
        """400 profileArn is required (§8.9)."""
        return cls.fault(400, bodies.PROFILE_ARN_REQUIRED)

    @classmethod
    def server_error(cls, status: int = 500) -> Script:
        """A 5xx with the generic internal-error body."""
        body = bodies.SERVICE_UNAVAILABLE if status == 503 else bodies.INTERNAL_ERROR
        return cls.fault(status, body)

    @classmethod
    def gateway_timeout(cls) -> Script:
        """524 that trips the §7.4 gateway-timeout detector."""
        return cls.fault(524, bodies.GATEWAY_TIMEOUT_524)

    @classmethod
    def invalid_grant(cls) -> Script:
        """400 invalid_grant for a token endpoint (§8.6, §13 #57)."""
        return cls.fault(400, bodies.INVALID_GRANT)

    @classmethod
    def mcp_results(cls, results: list[Mapping[str, Any]], *, query: str = "") -> Script:
        """Answer an MCP web_search call with these results (§11.3)."""
        return cls.json({"__mcp_results__": list(results), "query": query})

    @classmethod
    def mcp_error(cls, code: int = -32602, message: str = "Tool returned no results") -> Script:
        """Answer an MCP call with a JSON-RPC error (§11.3)."""
        return cls.json({"__mcp_error__": {"code": code, "message": message}})

    # --- serialization (control API) ----------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Describe this script as JSON for `POST /__fake__/script`."""
        out: dict[str, Any] = {"status": self.status, "steps": [step_json(s) for s in self.steps]}
        if self.body is not None:
            out["body_b64"] = base64.b64encode(self.body).decode()
        if self.headers:
            out["headers"] = [list(h) for h in self.headers]
        if self.content_type is not None:
            out["content_type"] = self.content_type
        if self.slicing is not None:
            s = self.slicing
            out["slicing"] = {
                "mode": s.mode,
                "size": s.size,
                "max_size": s.max_size,
                "seed": s.seed,
            }
        if self.pace is not None:
            out["pace"] = self.pace
        if self.first_byte_delay:
            out["first_byte_delay"] = self.first_byte_delay
        if self.transfer is not None:
            out["transfer"] = self.transfer
        if self.label:
            out["label"] = self.label
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Script:
        """Build a script from `to_json` output (or a hand-written equivalent)."""
        body: bytes | None = None
        if "body_b64" in data:
            body = base64.b64decode(data["body_b64"])
        elif "body" in data:
            raw = data["body"]
            body = raw.encode() if isinstance(raw, str) else bodies.json_body(raw)
        slicing = data.get("slicing")
        return cls(
            steps=tuple(step_from_json(s) for s in data.get("steps", ())),
            status=int(data.get("status", 200)),
            body=body,
            headers=tuple((str(k), str(v)) for k, v in data.get("headers", ())),
            content_type=data.get("content_type"),
            slicing=Slicing(**slicing) if slicing else None,
            pace=data.get("pace"),
            first_byte_delay=float(data.get("first_byte_delay", 0.0)),
            transfer=data.get("transfer"),
            label=str(data.get("label", "")),
        )


def _first_frames(steps: tuple[Step, ...], frames: int) -> tuple[Step, ...]:
    out: list[Step] = []
    seen = 0
    for step in steps:
        if isinstance(step, FRAME_STEPS):
            if seen >= frames:
                break
            seen += 1
        out.append(step)
    return tuple(out)


# --- rendering ------------------------------------------------------------------------------


def render(script: Script, *, slicing: Slicing, pace: float) -> list[Action]:
    """Turn a stream script into socket actions: writes, sleeps and a final abort.

    The script's own slicing and pace win over the defaults passed in.
    """
    slicing = script.slicing or slicing
    pace = script.pace if script.pace is not None else pace
    rng = random.Random(slicing.seed)
    actions: list[Action] = []
    pending: list[bytes] = []

    def flush() -> None:
        if not pending:
            return
        writes = pending[:] if slicing.mode == "frame" else slicing.cut(b"".join(pending), rng)
        pending.clear()
        for data in writes:
            if pace and any(isinstance(a, Write) for a in actions):
                actions.append(Sleep(pace))
            actions.append(Write(data))

    for step in script.steps:
        if isinstance(step, PauseStep):
            flush()
            actions.append(Sleep(step.seconds))
        elif isinstance(step, ResetStep | CloseStep):
            flush()
            actions.append(Abort(rst=isinstance(step, ResetStep)))
            return actions
        else:
            pending.append(encode_step(step))
    flush()
    return actions


def iter_events(script: Script) -> Iterator[EventStep]:
    """Yield the event steps of a script (for usage accounting)."""
    for step in script.steps:
        if isinstance(step, EventStep):
            yield step
