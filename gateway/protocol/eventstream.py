"""Encode and decode AWS event-stream frames (spec kiro-protocol §4).

Pure bytes in, values out: no Django, no I/O, no module-level mutable state.

Recovery policy (deliberately better than the Rust proxies' §4.6): the decoder never stops
and never waits for "the next chunk" to resume. When the bytes at the current offset are not a
good frame it opens a skipped region and scans forward, one candidate offset at a time, for
the next offset where a *plausible prelude* starts: sane lengths (16 ≤ total ≤ 16 MiB,
headers fit) AND a matching prelude CRC. Only such a prelude is worth waiting for when the
rest of its frame is not buffered yet; a random prelude passes the CRC with probability 2⁻³²,
so we never hang on garbage. A plausible prelude whose message CRC then fails only costs one
byte: scanning resumes just past its start, so a good frame hidden behind a truncated frame's
bogus length is still found. A frame whose two CRCs hold but whose headers are malformed is
skipped whole (the CRCs vouch for its boundaries). Consecutive skipped bytes are reported once,
as one `SkippedRegion`, when the next good frame (or the end of the stream) closes it, so any
chunking of the same bytes yields the same sequence. `close()` drains what is left with
end-of-stream semantics: a prelude whose frame would run past the end is skipped like any other
bad candidate, and complete frames after it are still returned. There is no "stop after 5
errors" mode: the buffer is bounded by one maximal frame plus one chunk, and scanning is
linear in practice (only crafted input with valid prelude CRCs can make it re-read bytes).
"""

from __future__ import annotations

import datetime
import json
import re
import struct
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType

PRELUDE_LENGTH = 12
MIN_FRAME_LENGTH = 16  # spec §4.4: prelude + message CRC
MAX_FRAME_LENGTH = 16 * 1024 * 1024  # spec §4.4: 16 MiB, inclusive

_PRELUDE = struct.Struct(">III")
_LENGTHS = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_I64 = struct.Struct(">q")
# Where a frame could start: total_length is 16..0x00FFFFFF (first byte 0x00, not followed by
# 0x0000 and a byte below 0x10) or exactly 0x01000000. Only bytes present can rule a position
# out, so a candidate cut short by the end of the buffer still matches (the decision is the
# same for any chunking). Lets garbage, zero runs included, be skipped at C speed.
_CANDIDATE = re.compile(rb"\x00(?!\x00\x00[\x00-\x0f])|\x01(?!\x00{0,2}[^\x00])")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MILLISECOND = datetime.timedelta(milliseconds=1)
# Per-decoder cache of parsed header blocks: Kiro repeats a dozen distinct blocks of ~90
# bytes. Bounded in count and block size so a thousand live streams stay cheap in memory.
_HEADER_CACHE_SIZE = 32
_HEADER_CACHE_MAX_BLOCK = 256


class HeaderType(IntEnum):
    """Name the §4.2 header value type codes."""

    TRUE = 0
    FALSE = 1
    BYTE = 2
    SHORT = 3
    INTEGER = 4
    LONG = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


_INT_FORMATS = {
    HeaderType.BYTE: struct.Struct(">b"),
    HeaderType.SHORT: struct.Struct(">h"),
    HeaderType.INTEGER: struct.Struct(">i"),
}
_INT_RANGES = {
    HeaderType.BYTE: (-(2**7), 2**7 - 1),
    HeaderType.SHORT: (-(2**15), 2**15 - 1),
    HeaderType.INTEGER: (-(2**31), 2**31 - 1),
    HeaderType.LONG: (-(2**63), 2**63 - 1),
    HeaderType.TIMESTAMP: (-(2**63), 2**63 - 1),
}


@dataclass(frozen=True, slots=True)
class TypedHeader:
    """Carry an integer header value together with its §4.2 type code.

    Byte, short and long values decode to this so they re-encode with the same code (a plain
    `int` encodes as integer, type 4); so does a timestamp outside `datetime`'s range.
    """

    type_code: int
    value: int


HeaderValue = bool | int | bytes | str | uuid.UUID | datetime.datetime | TypedHeader


class SkipReason(StrEnum):
    """Say why a skipped region started; the region keeps the reason of its first byte."""

    PRELUDE_CRC_MISMATCH = "prelude_crc_mismatch"
    MESSAGE_CRC_MISMATCH = "message_crc_mismatch"
    MESSAGE_TOO_SMALL = "message_too_small"
    MESSAGE_TOO_LARGE = "message_too_large"
    HEADER_PARSE_FAILED = "header_parse_failed"
    INVALID_HEADER_TYPE = "invalid_header_type"
    TRAILING_PARTIAL_FRAME = "trailing_partial_frame"


@dataclass(frozen=True, slots=True)
class Message:
    """Hold one decoded frame: its headers (last duplicate wins, §4.2) and raw payload."""

    headers: Mapping[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        """Return `:message-type`; absent or non-string means "event" (§4.2, §4.7)."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else "event"

    @property
    def event_type(self) -> str | None:
        """Return `:event-type` when it is a string header."""
        return self._string_header(":event-type")

    @property
    def exception_type(self) -> str | None:
        """Return `:exception-type` when it is a string header."""
        return self._string_header(":exception-type")

    @property
    def error_code(self) -> str | None:
        """Return `:error-code` when it is a string header."""
        return self._string_header(":error-code")

    def _string_header(self, name: str) -> str | None:
        # spec §4.2: only type-7 values are consulted for the well-known names.
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class SkippedRegion:
    """Report bytes the decoder could not use: absolute stream offset, length, first reason."""

    offset: int
    length: int
    reason: str


class _HeaderError(Exception):
    def __init__(self, reason: SkipReason) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse_headers(block: bytes) -> Mapping[str, HeaderValue]:
    """Decode a headers block (§4.2) or raise _HeaderError."""
    headers: dict[str, HeaderValue] = {}
    size = len(block)
    i = 0
    try:
        while i < size:
            name_length = block[i]
            if name_length == 0:
                raise _HeaderError(SkipReason.HEADER_PARSE_FAILED)
            i += 1 + name_length
            if i >= size:  # the name, or the type byte after it, runs past the block
                raise _HeaderError(SkipReason.HEADER_PARSE_FAILED)
            name = block[i - name_length : i].decode("utf-8", errors="replace")
            type_code = block[i]
            i += 1
            value: HeaderValue
            if type_code == HeaderType.TRUE:
                value = True
            elif type_code == HeaderType.FALSE:
                value = False
            elif type_code == HeaderType.STRING or type_code == HeaderType.BYTES:
                (length,) = _U16.unpack_from(block, i)
                i += 2 + length
                if i > size:
                    raise _HeaderError(SkipReason.HEADER_PARSE_FAILED)
                raw = block[i - length : i]
                value = (
                    raw.decode("utf-8", errors="replace") if type_code == HeaderType.STRING else raw
                )
            elif type_code in _INT_FORMATS:
                fmt = _INT_FORMATS[type_code]
                (number,) = fmt.unpack_from(block, i)
                i += fmt.size
                value = (
                    number if type_code == HeaderType.INTEGER else TypedHeader(type_code, number)
                )
            elif type_code == HeaderType.LONG:
                (number,) = _I64.unpack_from(block, i)
                i += 8
                value = TypedHeader(type_code, number)
            elif type_code == HeaderType.TIMESTAMP:
                (number,) = _I64.unpack_from(block, i)
                i += 8
                value = _timestamp(number)
            elif type_code == HeaderType.UUID:
                i += 16
                if i > size:
                    raise _HeaderError(SkipReason.HEADER_PARSE_FAILED)
                value = uuid.UUID(bytes=block[i - 16 : i])
            else:
                raise _HeaderError(SkipReason.INVALID_HEADER_TYPE)  # spec §4.2: codes ≥ 10
            headers[name] = value
    except struct.error:
        # A fixed-size value running past the block ("Incomplete" in §4.5 step 8).
        raise _HeaderError(SkipReason.HEADER_PARSE_FAILED) from None
    return MappingProxyType(headers)


def _timestamp(milliseconds: int) -> datetime.datetime | TypedHeader:
    try:
        return _EPOCH + milliseconds * _MILLISECOND
    except OverflowError:
        return TypedHeader(HeaderType.TIMESTAMP, milliseconds)


def _message_constructor() -> Callable[[Mapping[str, HeaderValue], bytes], Message]:
    """Build Messages through their slot descriptors, skipping the frozen-dataclass __init__.

    The generated __init__ routes every field through object.__setattr__; at ~100k frames/s
    that was a tenth of the decoder's time. The result is the same frozen Message.
    """
    new = object.__new__
    set_headers = Message.headers.__set__  # type: ignore[attr-defined]
    set_payload = Message.payload.__set__  # type: ignore[attr-defined]

    def construct(headers: Mapping[str, HeaderValue], payload: bytes) -> Message:
        message = new(Message)
        set_headers(message, headers)
        set_payload(message, payload)
        return message

    return construct


_new_message = _message_constructor()


class EventStreamDecoder:
    """Turn a byte stream, fed in any chunking, into Messages and SkippedRegions.

    Undecided bytes live in one immutable `bytes` walked with an offset (slicing it yields the
    header key and the payload without a second copy). Chunks that cannot complete anything
    are parked in a list and joined once enough has arrived, so a 16 MiB frame fed in small
    chunks costs linear, not quadratic, copying. Header blocks repeat from frame to frame, so
    their parsed form is cached per decoder.
    """

    __slots__ = (
        "_base",
        "_buffer",
        "_bytes_received",
        "_bytes_skipped",
        "_closed",
        "_frames_decoded",
        "_header_cache",
        "_parked",
        "_parked_size",
        "_regions_skipped",
        "_skip_reason",
        "_skip_start",
        "_wanted",
    )

    def __init__(self) -> None:
        self._buffer = b""  # undecided bytes; _drain() drops what it decides
        self._base = 0  # absolute stream offset of _buffer[0]
        self._parked: list[bytes] = []  # chunks received after _buffer, not yet joined
        self._parked_size = 0
        self._wanted = PRELUDE_LENGTH  # undecided bytes needed before decoding can progress
        self._skip_start = -1  # absolute offset of the open skipped region, -1 when none
        self._skip_reason = SkipReason.PRELUDE_CRC_MISMATCH
        self._header_cache: dict[bytes, Mapping[str, HeaderValue]] = {}
        self._bytes_received = 0
        self._bytes_skipped = 0
        self._frames_decoded = 0
        self._regions_skipped = 0
        self._closed = False

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def bytes_skipped(self) -> int:
        return self._bytes_skipped

    @property
    def frames_decoded(self) -> int:
        return self._frames_decoded

    @property
    def regions_skipped(self) -> int:
        return self._regions_skipped

    @property
    def buffered(self) -> int:
        """Return how many received bytes are still undecided (a partial frame, usually)."""
        return len(self._buffer) + self._parked_size

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message | SkippedRegion]:
        """Append a chunk and return every frame and skipped region it completes.

        Never raises on bad bytes; raises RuntimeError only when fed after close().
        """
        if self._closed:
            raise RuntimeError("EventStreamDecoder.feed() called after close()")
        size = len(data)
        self._bytes_received += size
        if len(self._buffer) + self._parked_size + size < self._wanted:
            if size:
                self._parked.append(bytes(data))
                self._parked_size += size
            return []
        self._join(data)
        return self._drain(final=False)

    def close(self) -> list[Message | SkippedRegion]:
        """Finish the stream: decode what still can be, and report the unusable tail.

        Returns Messages too: frames that followed a truncated frame are recovered only here,
        once it is known that the truncated frame's declared length will never arrive.
        Idempotent.
        """
        if self._closed:
            return []
        self._join(b"")
        out = self._drain(final=True)
        if self._skip_start >= 0:
            out.append(self._close_region(self._base))  # _drain(final=True) consumed all
        self._closed = True
        return out

    def _join(self, data: bytes | bytearray | memoryview) -> None:
        if self._parked:
            self._buffer = b"".join([self._buffer, *self._parked, data])
            self._parked.clear()
            self._parked_size = 0
        elif self._buffer:
            self._buffer += data
        else:
            self._buffer = bytes(data)  # no copy when data is already bytes

    def _close_region(self, end: int) -> SkippedRegion:
        region = SkippedRegion(self._skip_start, end - self._skip_start, self._skip_reason)
        self._skip_start = -1
        self._regions_skipped += 1
        self._bytes_skipped += region.length
        return region

    def _open_region(self, position: int, reason: SkipReason) -> None:
        if self._skip_start < 0:
            self._skip_start = self._base + position
            self._skip_reason = reason

    def _drain(self, *, final: bool) -> list[Message | SkippedRegion]:
        """Decode from the buffer's start until more data is needed (or, if final, the end)."""
        out: list[Message | SkippedRegion] = []
        buffer = self._buffer
        end = len(buffer)
        position = 0
        wanted = PRELUDE_LENGTH
        decoded = 0
        cache = self._header_cache
        crc32 = zlib.crc32
        unpack_prelude = _PRELUDE.unpack_from
        unpack_u32 = _U32.unpack_from
        new_message = _new_message
        while end - position >= PRELUDE_LENGTH:
            total, headers_length, prelude_crc = unpack_prelude(buffer, position)
            # spec §4.5 steps 3-5, but the prelude CRC is checked before waiting (§4.6 fix).
            if total < MIN_FRAME_LENGTH:
                reason = SkipReason.MESSAGE_TOO_SMALL
            elif total > MAX_FRAME_LENGTH:
                reason = SkipReason.MESSAGE_TOO_LARGE
            elif crc32(buffer[position : position + 8]) != prelude_crc:
                reason = SkipReason.PRELUDE_CRC_MISMATCH
            elif headers_length > total - MIN_FRAME_LENGTH:
                reason = SkipReason.HEADER_PARSE_FAILED  # spec §4.5 step 7
            elif total > end - position:
                if not final:
                    wanted = total  # a plausible prelude: the rest of its frame is on its way
                    break
                reason = SkipReason.TRAILING_PARTIAL_FRAME
            else:
                frame_end = position + total
                crc_at = frame_end - 4
                # The message CRC covers bytes 0..total-5: resume from the prelude's CRC.
                if (
                    crc32(buffer[position + 8 : crc_at], prelude_crc)
                    != unpack_u32(buffer, crc_at)[0]
                ):
                    reason = SkipReason.MESSAGE_CRC_MISMATCH
                else:
                    headers_end = position + PRELUDE_LENGTH + headers_length
                    block = buffer[position + PRELUDE_LENGTH : headers_end]
                    headers = cache.get(block)
                    if headers is None:
                        try:
                            headers = _parse_headers(block)
                        except _HeaderError as error:
                            # Both CRCs hold, so the frame's extent is trustworthy: skip it
                            # whole rather than scanning through it.
                            self._open_region(position, error.reason)
                            position = frame_end
                            continue
                        if headers_length <= _HEADER_CACHE_MAX_BLOCK:
                            if len(cache) >= _HEADER_CACHE_SIZE:
                                cache.clear()
                            cache[block] = headers
                    if self._skip_start >= 0:
                        out.append(self._close_region(self._base + position))
                    out.append(new_message(headers, buffer[headers_end:crc_at]))
                    decoded += 1
                    position = frame_end
                    continue
            # Not a frame here: resynchronise at the next byte that could start one.
            self._open_region(position, reason)
            match = _CANDIDATE.search(buffer, position + 1)
            position = match.start() if match is not None else end
        if final and position < end:
            # What is left is shorter than any frame.
            self._open_region(position, SkipReason.TRAILING_PARTIAL_FRAME)
            position = end
        self._frames_decoded += decoded
        self._buffer = buffer[position:] if position else buffer
        self._base += position
        self._wanted = wanted
        return out


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    if not 1 <= len(raw_name) <= 255:
        raise ValueError(f"header name must be 1-255 UTF-8 bytes: {name!r}")
    prefix = bytes((len(raw_name),)) + raw_name
    if isinstance(value, bool):
        return prefix + bytes((HeaderType.TRUE if value else HeaderType.FALSE,))
    if isinstance(value, str):
        return prefix + _encode_variable(HeaderType.STRING, value.encode("utf-8"))
    if isinstance(value, bytes | bytearray | memoryview):
        return prefix + _encode_variable(HeaderType.BYTES, bytes(value))
    if isinstance(value, int):
        low, high = _INT_RANGES[HeaderType.INTEGER]
        code = HeaderType.INTEGER if low <= value <= high else HeaderType.LONG
        return prefix + _encode_integer(code, value)
    if isinstance(value, TypedHeader):
        if value.type_code not in _INT_RANGES:
            raise ValueError(f"TypedHeader needs an integer type code, got {value.type_code}")
        return prefix + _encode_integer(value.type_code, value.value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)  # naive means UTC
        return prefix + _encode_integer(HeaderType.TIMESTAMP, (value - _EPOCH) // _MILLISECOND)
    if isinstance(value, uuid.UUID):
        return prefix + bytes((HeaderType.UUID,)) + value.bytes
    raise TypeError(f"unsupported header value type {type(value).__name__} for {name!r}")


def _encode_variable(type_code: int, raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError("string and byte-array header values are limited to 65535 bytes")
    return bytes((type_code,)) + _U16.pack(len(raw)) + raw


def _encode_integer(type_code: int, value: int) -> bytes:
    low, high = _INT_RANGES[type_code]
    if not low <= value <= high:
        raise ValueError(f"{value} does not fit header type {type_code}")
    fmt = _INT_FORMATS.get(type_code, _I64)
    return bytes((type_code,)) + fmt.pack(value)


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """Frame headers and payload per §4.1; raises ValueError for unencodable input."""
    block = b"".join([_encode_header(name, value) for name, value in headers.items()])
    return _frame(block, payload)


def _frame(block: bytes, payload: bytes) -> bytes:
    total = MIN_FRAME_LENGTH + len(block) + len(payload)
    if total > MAX_FRAME_LENGTH:
        raise ValueError(f"frame of {total} bytes exceeds the 16 MiB limit (§4.4)")
    prelude = _LENGTHS.pack(total, len(block))
    head = prelude + _U32.pack(zlib.crc32(prelude))
    crc = zlib.crc32(payload, zlib.crc32(block, zlib.crc32(head)))
    return b"".join((head, block, payload, _U32.pack(crc)))


def _json(payload: Mapping[str, object] | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# Header order of the §13.2 vectors, so encode_event() reproduces F1-F4 byte for byte.
_EVENT_TRAILER = _encode_header(":content-type", "application/json") + _encode_header(
    ":message-type", "event"
)


def encode_event(event_type: str, payload: Mapping[str, object] | bytes) -> bytes:
    """Frame an event as Kiro sends it: three string headers and compact JSON (§4.2, §13.2).

    The fake upstream calls this per event, so the two constant headers are pre-encoded.
    """
    return _frame(_encode_header(":event-type", event_type) + _EVENT_TRAILER, _json(payload))


def encode_exception(exception_type: str, message: str) -> bytes:
    """Frame an `exception` message with a `{"message": …}` payload (§5, vector F5)."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        _json({"message": message}),
    )


def encode_error(error_code: str, message: str) -> bytes:
    """Frame an `error` message with a `{"message": …}` payload (§5, vector F6)."""
    return encode_message(
        {":error-code": error_code, ":message-type": "error"}, _json({"message": message})
    )
