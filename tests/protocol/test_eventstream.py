"""The AWS event-stream codec against spec kiro-protocol §4 and the §13 vectors."""

from __future__ import annotations

import datetime
import itertools
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.eventstream import (
    MAX_FRAME_LENGTH,
    EventStreamDecoder,
    HeaderType,
    HeaderValue,
    Message,
    SkippedRegion,
    TypedHeader,
    encode_error,
    encode_event,
    encode_exception,
    encode_message,
)

# §13.2, verbatim.
F1 = bytes.fromhex(
    "0000007f0000005c7c7db5a80b3a6576656e742d74797065070016617373697374616e74526573706f6e7365"
    "4576656e740d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d657373"
    "6167652d747970650700056576656e747b22636f6e74656e74223a2248656c6c6f227d9b5d0635"
)
F2 = bytes.fromhex(
    "0000008600000057ae8b5e0c0b3a6576656e742d74797065070011636f6e7465787455736167654576656e74"
    "0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d74"
    "7970650700056576656e747b22636f6e74657874557361676550657263656e74616765223a31322e357d7754"
    "90df"
)
F3 = bytes.fromhex(
    "000000b2000000528a40b4c50b3a6576656e742d7479706507000c746f6f6c5573654576656e740d3a636f6e"
    "74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700"
    "056576656e747b226e616d65223a226765745f77656174686572222c22746f6f6c5573654964223a22746f6f"
    "6c7573655f31222c22696e707574223a227b5c22636974795c223a222c2273746f70223a66616c73657dcd6a"
    "6969"
)
F4 = bytes.fromhex(
    "000000b100000052cde0ce150b3a6576656e742d7479706507000c746f6f6c5573654576656e740d3a636f6e"
    "74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700"
    "056576656e747b226e616d65223a226765745f77656174686572222c22746f6f6c5573654964223a22746f6f"
    "6c7573655f31222c22696e707574223a225c2250617269735c227d222c2273746f70223a747275657d2fc3d9"
    "60"
)
F5 = bytes.fromhex(
    "000000b60000006cbea10fae0f3a657863657074696f6e2d7479706507001e436f6e74656e744c656e677468"
    "4578636565646564457863657074696f6e0d3a636f6e74656e742d747970650700106170706c69636174696f"
    "6e2f6a736f6e0d3a6d6573736167652d74797065070009657863657074696f6e7b226d657373616765223a22"
    "526573706f6e736520657863656564656420746865206d6178696d756d20616c6c6f776564206c656e677468"
    "227dc4e7fcdf"
)
F6 = bytes.fromhex(
    "000000a80000003c0a1a77b90b3a6572726f722d636f6465070017496e7465726e616c536572766572457863"
    "657074696f6e0d3a6d6573736167652d747970650700056572726f727b226d657373616765223a22456e636f"
    "756e746572656420616e20756e6578706563746564206572726f72207768656e2070726f63657373696e6720"
    "74686520726571756573742c20706c656173652074727920616761696e2e227dfc051522"
)
VECTORS = [F1, F2, F3, F4, F5, F6]
STREAM = b"".join(VECTORS)
JSON_EVENT = {":content-type": "application/json", ":message-type": "event"}


def decode(chunks: Iterable[bytes]) -> list[Message | SkippedRegion]:
    decoder = EventStreamDecoder()
    out: list[Message | SkippedRegion] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def raw_frame(headers_block: bytes, payload: bytes, *, total: int | None = None) -> bytes:
    """Build a frame around a raw headers block with valid CRCs (the §13.2 recipe)."""
    length = 16 + len(headers_block) + len(payload) if total is None else total
    prelude = struct.pack(">II", length, len(headers_block))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers_block + payload
    return message + struct.pack(">I", zlib.crc32(message))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


def messages(items: Iterable[Message | SkippedRegion]) -> list[Message]:
    return [item for item in items if isinstance(item, Message)]


# §13.1 and the CRC fields of §13.2


def test_it_uses_the_iso_hdlc_crc32() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926
    assert zlib.crc32(b"") == 0


def test_it_writes_the_prelude_and_message_crcs_of_vector_f1() -> None:
    frame = encode_event("assistantResponseEvent", {"content": "Hello"})

    assert frame[8:12] == bytes.fromhex("7c7db5a8")
    assert frame[-4:] == bytes.fromhex("9b5d0635")


# Encoder against the §13.2 vectors


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (encode_event("assistantResponseEvent", {"content": "Hello"}), F1),
        (encode_event("contextUsageEvent", {"contextUsagePercentage": 12.5}), F2),
        (
            encode_event(
                "toolUseEvent",
                {
                    "name": "get_weather",
                    "toolUseId": "tooluse_1",
                    "input": '{"city":',
                    "stop": False,
                },
            ),
            F3,
        ),
        (
            encode_event(
                "toolUseEvent",
                {
                    "name": "get_weather",
                    "toolUseId": "tooluse_1",
                    "input": '"Paris"}',
                    "stop": True,
                },
            ),
            F4,
        ),
        (
            encode_exception(
                "ContentLengthExceededException", "Response exceeded the maximum allowed length"
            ),
            F5,
        ),
        (
            encode_error(
                "InternalServerException",
                "Encountered an unexpected error when processing the request, please try again.",
            ),
            F6,
        ),
    ],
    ids=["F1", "F2", "F3", "F4", "F5", "F6"],
)
def test_it_encodes_the_spec_vectors_byte_for_byte(frame: bytes, expected: bytes) -> None:
    assert frame == expected


def test_it_encodes_a_bytes_payload_verbatim() -> None:
    assert encode_event("assistantResponseEvent", b'{"content":"Hello"}') == F1


def test_it_encodes_event_json_compactly_without_ascii_escapes() -> None:
    frame = encode_event("assistantResponseEvent", {"content": "héllo 世界"})

    (message,) = decode([frame])
    assert isinstance(message, Message)
    assert message.payload == '{"content":"héllo 世界"}'.encode()


# Decoder against the §13.2 vectors


@pytest.mark.parametrize(
    ("frame", "headers", "payload"),
    [
        (
            F1,
            {":event-type": "assistantResponseEvent", **JSON_EVENT},
            b'{"content":"Hello"}',
        ),
        (
            F2,
            {":event-type": "contextUsageEvent", **JSON_EVENT},
            b'{"contextUsagePercentage":12.5}',
        ),
        (
            F3,
            {":event-type": "toolUseEvent", **JSON_EVENT},
            b'{"name":"get_weather","toolUseId":"tooluse_1","input":"{\\"city\\":","stop":false}',
        ),
        (
            F4,
            {":event-type": "toolUseEvent", **JSON_EVENT},
            b'{"name":"get_weather","toolUseId":"tooluse_1","input":"\\"Paris\\"}","stop":true}',
        ),
        (
            F5,
            {
                ":exception-type": "ContentLengthExceededException",
                ":content-type": "application/json",
                ":message-type": "exception",
            },
            b'{"message":"Response exceeded the maximum allowed length"}',
        ),
        (
            F6,
            {":error-code": "InternalServerException", ":message-type": "error"},
            b'{"message":"Encountered an unexpected error when processing the request, '
            b'please try again."}',
        ),
    ],
    ids=["F1", "F2", "F3", "F4", "F5", "F6"],
)
def test_it_decodes_the_spec_vectors(
    frame: bytes, headers: dict[str, HeaderValue], payload: bytes
) -> None:
    assert decode([frame]) == [Message(headers, payload)]


def test_it_exposes_the_well_known_headers_of_each_message_kind() -> None:
    event, exception, error = messages(decode([F1 + F5 + F6]))

    assert (event.message_type, event.event_type) == ("event", "assistantResponseEvent")
    assert (exception.message_type, exception.exception_type) == (
        "exception",
        "ContentLengthExceededException",
    )
    assert (error.message_type, error.error_code) == ("error", "InternalServerException")
    assert event.exception_type is None and event.error_code is None


def test_it_decodes_f1_in_one_read_as_exactly_one_message() -> None:
    decoder = EventStreamDecoder()

    assert len(decoder.feed(F1)) == 1
    assert decoder.close() == []


@pytest.mark.parametrize("offset", range(1, len(F1)))
def test_it_decodes_f1_split_into_two_reads_at_every_offset(offset: int) -> None:
    assert decode([F1[:offset], F1[offset:]]) == decode([F1])


def test_it_yields_nothing_until_the_second_half_of_a_split_frame() -> None:
    decoder = EventStreamDecoder()

    assert decoder.feed(F1[:50]) == []
    assert len(decoder.feed(F1[50:])) == 1


def test_it_decodes_four_concatenated_frames_in_order() -> None:
    decoded = decode([F1 + F2 + F3 + F4])

    assert decoded == [*decode([F1]), *decode([F2]), *decode([F3]), *decode([F4])]
    assert [m.event_type for m in messages(decoded)] == [
        "assistantResponseEvent",
        "contextUsageEvent",
        "toolUseEvent",
        "toolUseEvent",
    ]


# Chunking


@pytest.mark.parametrize("offset", range(1, len(STREAM)))
def test_it_decodes_a_multi_frame_stream_split_at_every_offset(offset: int) -> None:
    assert decode([STREAM[:offset], STREAM[offset:]]) == decode([STREAM])


def test_it_decodes_a_multi_frame_stream_fed_one_byte_at_a_time() -> None:
    one_read = decode([STREAM])

    assert len(one_read) == len(VECTORS)
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == one_read


UTF8_TEXT = "héllo 世界 🎉 ok"
UTF8_FRAME = encode_event("assistantResponseEvent", {"content": UTF8_TEXT})
UTF8_START = UTF8_FRAME.index("é".encode())


@pytest.mark.parametrize("offset", range(UTF8_START, UTF8_START + len(UTF8_TEXT.encode())))
def test_it_reassembles_multibyte_utf8_split_across_chunks(offset: int) -> None:
    (message,) = messages(decode([UTF8_FRAME[:offset], UTF8_FRAME[offset:]]))

    assert message.payload.decode("utf-8") == f'{{"content":"{UTF8_TEXT}"}}'


def test_it_accepts_bytearray_and_memoryview_chunks() -> None:
    decoded = decode([bytearray(STREAM[:100]), memoryview(STREAM)[100:]])

    assert decoded == decode([STREAM])


# Recovery (§4.6, improved: no good frame after a bad one is lost)


def test_it_skips_a_frame_with_a_bad_prelude_crc_and_keeps_the_next() -> None:
    bad = flip(F2, 9)

    assert decode([F1 + bad + F3]) == [
        *decode([F1]),
        SkippedRegion(len(F1), len(bad), "prelude_crc_mismatch"),
        *decode([F3]),
    ]


def test_it_skips_a_frame_with_a_bad_message_crc_within_the_same_read() -> None:
    decoder = EventStreamDecoder()

    out = decoder.feed(flip(F1, len(F1) - 1) + F2)

    assert out == [SkippedRegion(0, len(F1), "message_crc_mismatch"), *decode([F2])]


def test_it_skips_a_frame_with_a_corrupt_payload_byte() -> None:
    bad = flip(F3, 120)

    assert decode([F1 + bad + F2]) == [
        *decode([F1]),
        SkippedRegion(len(F1), len(bad), "message_crc_mismatch"),
        *decode([F2]),
    ]


def test_it_resynchronises_after_garbage_before_the_first_frame() -> None:
    assert decode([b"\x01\x02\x03" + F1]) == [
        SkippedRegion(0, 3, "message_too_large"),
        *decode([F1]),
    ]


def test_it_resynchronises_after_garbage_between_frames() -> None:
    garbage = b"\x00\x00\x00\x00 not a frame \x00\x01\xff" * 5

    assert decode([F1 + garbage + F2]) == [
        *decode([F1]),
        SkippedRegion(len(F1), len(garbage), "message_too_small"),
        *decode([F2]),
    ]


def test_it_reports_a_skipped_region_once_when_garbage_spans_many_reads() -> None:
    garbage = bytes(range(2, 200)) * 3
    data = F1 + garbage + F2

    decoded = decode([data[i : i + 7] for i in range(0, len(data), 7)])

    assert [item for item in decoded if isinstance(item, SkippedRegion)] == [
        SkippedRegion(len(F1), len(garbage), "message_too_large")
    ]


def test_it_coalesces_adjacent_bad_frames_into_one_region() -> None:
    bad = flip(F2, 20) + b"junk" + flip(F3, 3)

    assert decode([F1 + bad + F4]) == [
        *decode([F1]),
        SkippedRegion(len(F1), len(bad), "message_crc_mismatch"),
        *decode([F4]),
    ]


def test_it_reports_a_truncated_frame_at_the_end_of_the_stream() -> None:
    decoder = EventStreamDecoder()

    assert messages(decoder.feed(F1 + F2[:60])) == messages(decode([F1]))
    assert decoder.close() == [SkippedRegion(len(F1), 60, "trailing_partial_frame")]


def test_it_reports_a_trailing_fragment_shorter_than_a_prelude() -> None:
    assert decode([F1 + F2[:5]])[-1] == SkippedRegion(len(F1), 5, "trailing_partial_frame")


def test_it_finds_frames_hidden_by_a_truncated_frames_length_in_the_same_read() -> None:
    # F3 claims 178 bytes; only 60 were sent before F1 and F2 (together 261 bytes) followed.
    decoder = EventStreamDecoder()

    out = decoder.feed(F3[:60] + F1 + F2)

    assert out == [SkippedRegion(0, 60, "message_crc_mismatch"), *decode([F1]), *decode([F2])]


def test_it_recovers_frames_after_a_truncated_frame_when_the_stream_ends() -> None:
    big = encode_event("assistantResponseEvent", {"content": "x" * 10_000})
    decoder = EventStreamDecoder()

    assert decoder.feed(big[:100] + F1 + F2) == []  # waiting: big's prelude is plausible
    assert decoder.close() == [
        SkippedRegion(0, 100, "trailing_partial_frame"),
        *decode([F1]),
        *decode([F2]),
    ]


def test_it_rejects_a_total_length_below_16() -> None:
    tiny = raw_frame(b"", b"", total=10)

    assert decode([tiny + F1]) == [SkippedRegion(0, len(tiny), "message_too_small"), *decode([F1])]


def test_it_rejects_a_total_length_above_16_mib_without_waiting() -> None:
    prelude = struct.pack(">II", MAX_FRAME_LENGTH + 1, 0)
    huge = prelude + struct.pack(">I", zlib.crc32(prelude))
    decoder = EventStreamDecoder()

    assert decoder.feed(huge + F1) == [
        SkippedRegion(0, len(huge), "message_too_large"),
        *decode([F1]),
    ]


def test_it_rejects_a_headers_length_that_overruns_the_frame() -> None:
    bad = raw_frame(b"", b"abcd", total=20)
    bad = bad[:4] + struct.pack(">I", 5) + bad[8:]  # headers_length 5 > 20 - 16
    bad = bad[:8] + struct.pack(">I", zlib.crc32(bad[:8])) + bad[12:]

    assert decode([bad + F1]) == [SkippedRegion(0, len(bad), "header_parse_failed"), *decode([F1])]


def test_it_skips_a_frame_with_a_header_type_of_10_or_more() -> None:
    bad = raw_frame(b"\x01x\x0a", b"{}")

    assert decode([bad + F1]) == [SkippedRegion(0, len(bad), "invalid_header_type"), *decode([F1])]


@pytest.mark.parametrize(
    "block",
    [
        b"\x00\x07\x00\x00",  # zero name length
        b"\x05:na",  # name runs past the block
        b"\x01x",  # no type byte
        b"\x01x\x07\x00\x09abc",  # string value runs past the block
        b"\x01x\x04\x00\x00",  # integer value runs past the block
        b"\x01x\x09" + bytes(15),  # uuid value runs past the block
    ],
    ids=["zero-name", "name-overrun", "no-type", "string-overrun", "int-overrun", "uuid-overrun"],
)
def test_it_skips_a_frame_whose_headers_do_not_parse(block: bytes) -> None:
    bad = raw_frame(block, b"{}")

    assert decode([bad + F1]) == [SkippedRegion(0, len(bad), "header_parse_failed"), *decode([F1])]


# Limits (§4.4)


BLOB_HEADERS: dict[str, HeaderValue] = {":message-type": "event", ":event-type": "blob"}
BLOB_PAYLOAD_LENGTH = MAX_FRAME_LENGTH - len(encode_message(BLOB_HEADERS, b""))


@pytest.fixture(scope="module")
def largest_frame() -> bytes:
    return encode_message(BLOB_HEADERS, b"a" * BLOB_PAYLOAD_LENGTH)


def test_it_decodes_a_frame_of_exactly_16_mib_fed_in_small_chunks(largest_frame: bytes) -> None:
    decoder = EventStreamDecoder()

    out: list[Message | SkippedRegion] = []
    for i in range(0, len(largest_frame), 65_536):
        out += decoder.feed(largest_frame[i : i + 65_536])

    assert len(largest_frame) == MAX_FRAME_LENGTH
    assert [(m.event_type, len(m.payload)) for m in messages(out)] == [
        ("blob", BLOB_PAYLOAD_LENGTH)
    ]


def test_it_resynchronises_onto_a_16_mib_frame_cut_inside_its_length(largest_frame: bytes) -> None:
    # A 16 MiB frame is the only one whose first byte is 0x01; cut right after it.
    data = b"\x01\x00\x07 junk \x00\x00\x00\x00" + largest_frame + F1
    at = data.index(largest_frame) + 1

    assert decode([data[:at], data[at:]]) == [
        SkippedRegion(0, at - 1, "message_too_large"),
        *decode([largest_frame]),
        *decode([F1]),
    ]


def test_it_refuses_to_encode_a_frame_over_16_mib() -> None:
    with pytest.raises(ValueError, match="16 MiB"):
        encode_message({}, b"a" * (MAX_FRAME_LENGTH - 15))


def test_it_waits_for_the_rest_of_a_frame_with_a_plausible_prelude() -> None:
    decoder = EventStreamDecoder()

    assert decoder.feed(F1[:12]) == []
    assert decoder.buffered == 12
    assert decoder.close() == [SkippedRegion(0, 12, "trailing_partial_frame")]


# Headers (§4.2)

ALL_TYPES: list[tuple[int, HeaderValue]] = [
    (HeaderType.TRUE, True),
    (HeaderType.FALSE, False),
    (HeaderType.BYTE, TypedHeader(HeaderType.BYTE, -128)),
    (HeaderType.SHORT, TypedHeader(HeaderType.SHORT, 32_767)),
    (HeaderType.INTEGER, -(2**31)),
    (HeaderType.LONG, TypedHeader(HeaderType.LONG, 2**63 - 1)),
    (HeaderType.BYTES, b"\x00\xffraw"),
    (HeaderType.STRING, "välue ✓"),
    (
        HeaderType.TIMESTAMP,
        datetime.datetime(2026, 4, 24, 12, 30, 1, 123_000, tzinfo=datetime.UTC),
    ),
    (HeaderType.UUID, uuid.UUID("0b4445e1-f5be-49e1-87ce-62bbc28ad705")),
]


@pytest.mark.parametrize(
    ("type_code", "value"), ALL_TYPES, ids=[HeaderType(t).name for t, _ in ALL_TYPES]
)
def test_it_round_trips_every_header_type(type_code: int, value: HeaderValue) -> None:
    frame = encode_message({"h": value}, b"")

    assert frame[12 + 2] == type_code  # name length, name "h", then the type code
    assert decode([frame]) == [Message({"h": value}, b"")]


def test_it_decodes_extra_headers_of_every_type_in_any_order() -> None:
    headers = {f"x-{code}": value for code, value in ALL_TYPES}
    headers = {":message-type": "event", **headers, ":event-type": "assistantResponseEvent"}

    (message,) = messages(decode([encode_message(headers, b'{"content":"Hi"}')]))
    assert message.headers == headers
    assert message.event_type == "assistantResponseEvent"


@pytest.mark.parametrize(
    ("value", "type_code"),
    [(2**31 - 1, HeaderType.INTEGER), (2**31, HeaderType.LONG), (-(2**31) - 1, HeaderType.LONG)],
)
def test_it_encodes_a_plain_int_as_integer_or_long_as_it_fits(value: int, type_code: int) -> None:
    assert encode_message({"n": value}, b"")[14] == type_code


@pytest.mark.parametrize(
    "value",
    [2**63, TypedHeader(HeaderType.BYTE, 128), TypedHeader(HeaderType.STRING, 1)],
    ids=["int-over-i64", "byte-out-of-range", "non-integer-code"],
)
def test_it_refuses_integer_values_that_do_not_fit(value: HeaderValue) -> None:
    with pytest.raises(ValueError):
        encode_message({"n": value}, b"")


@pytest.mark.parametrize(
    "headers",
    [{"": "x"}, {"n" * 256: "x"}, {"s": "x" * 65_536}, {"b": b"x" * 65_536}],
    ids=["empty-name", "long-name", "long-string", "long-bytes"],
)
def test_it_refuses_header_sizes_the_format_cannot_carry(headers: dict[str, HeaderValue]) -> None:
    with pytest.raises(ValueError):
        encode_message(headers, b"")


def test_it_refuses_unsupported_header_value_types() -> None:
    with pytest.raises(TypeError):
        encode_message({"f": 1.5}, b"")  # type: ignore[dict-item]


def test_it_encodes_a_naive_datetime_as_utc() -> None:
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5)

    (message,) = messages(decode([encode_message({"t": naive}, b"")]))
    assert message.headers["t"] == naive.replace(tzinfo=datetime.UTC)


def test_it_keeps_a_timestamp_outside_datetimes_range_as_a_typed_header() -> None:
    far = TypedHeader(HeaderType.TIMESTAMP, 2**62)

    assert decode([encode_message({"t": far}, b"")]) == [Message({"t": far}, b"")]


def test_it_lets_the_last_duplicate_header_win() -> None:
    block = b"\x0d:message-type\x07\x00\x05error\x0d:message-type\x07\x00\x09exception"

    (message,) = messages(decode([raw_frame(block, b"")]))
    assert message.message_type == "exception"


def test_it_decodes_lossy_utf8_in_names_and_strings() -> None:
    block = b"\x02a\xff\x07\x00\x02\xfe!"

    (message,) = messages(decode([raw_frame(block, b"")]))
    assert message.headers == {"a\ufffd": "\ufffd!"}


def test_it_decodes_a_frame_without_headers() -> None:
    assert decode([encode_message({}, b"payload")]) == [Message({}, b"payload")]


def test_it_treats_an_absent_message_type_as_event() -> None:
    assert Message({}, b"").message_type == "event"


def test_it_ignores_non_string_values_of_the_well_known_headers() -> None:
    message = Message(
        {
            ":message-type": b"error",
            ":event-type": 7,
            ":exception-type": True,
            ":error-code": b"E",
        },
        b"",
    )

    assert message.message_type == "event"
    assert (message.event_type, message.exception_type, message.error_code) == (None, None, None)


def test_it_returns_read_only_headers() -> None:
    (message,) = messages(decode([F1]))

    with pytest.raises(TypeError):
        message.headers[":event-type"] = "other"  # type: ignore[index]


# Decoder lifecycle and counters


def test_it_counts_bytes_frames_and_skipped_regions() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(F1 + b"\xffgarbage" + F2)
    decoder.feed(F3[:10])
    decoder.close()

    assert decoder.bytes_received == len(F1) + 8 + len(F2) + 10
    assert decoder.frames_decoded == 2
    assert decoder.regions_skipped == 2
    assert decoder.bytes_skipped == 18


def test_it_returns_nothing_for_an_empty_chunk() -> None:
    assert EventStreamDecoder().feed(b"") == []


def test_it_returns_nothing_when_closing_a_clean_stream() -> None:
    decoder = EventStreamDecoder()
    decoder.feed(STREAM)

    assert decoder.close() == []
    assert decoder.close() == []


def test_it_refuses_to_feed_after_close() -> None:
    decoder = EventStreamDecoder()
    decoder.close()

    with pytest.raises(RuntimeError):
        decoder.feed(F1)


# Properties


@st.composite
def corrupted_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[bool, bytes]]]:
    """Draw a stream of intact frames mixed with garbage and damaged frames.

    Returns the bytes and the pieces, each marked intact or not, so a test can say what a
    perfect decoder must return.
    """
    pieces: list[tuple[bool, bytes]] = []
    for _ in range(draw(st.integers(0, 8))):
        frame = encode_message(
            draw(
                st.dictionaries(
                    st.text(min_size=1, max_size=5),
                    st.one_of(st.text(max_size=8), st.booleans(), st.binary(max_size=8)),
                    max_size=3,
                )
            ),
            draw(st.one_of(st.binary(max_size=16), st.binary(min_size=100, max_size=400))),
        )
        damage = draw(st.sampled_from(["none", "none", "flip", "truncate", "garbage", "headers"]))
        if damage == "none":
            pieces.append((True, frame))
        elif damage == "flip":
            index = draw(st.integers(0, len(frame) - 1))
            mask = draw(st.integers(1, 255))
            pieces.append(
                (False, frame[:index] + bytes([frame[index] ^ mask]) + frame[index + 1 :])
            )
        elif damage == "truncate":
            pieces.append((False, frame[: draw(st.integers(1, len(frame) - 1))]))
        elif damage == "garbage":
            pieces.append((False, draw(st.binary(min_size=1, max_size=40))))
        else:
            pieces.append((False, raw_frame(b"\x01x" + bytes([draw(st.integers(10, 255))]), b"")))
    return b"".join(piece for _, piece in pieces), pieces


@settings(max_examples=200, deadline=None)
@given(data=corrupted_streams(), cuts=st.lists(st.integers(0, 4_000), max_size=12))
def test_it_yields_the_same_sequence_for_any_chunking(
    data: tuple[bytes, list[tuple[bool, bytes]]], cuts: list[int]
) -> None:
    stream, _ = data
    cuts = [cut % (len(stream) + 1) for cut in cuts]

    assert decode(split(stream, cuts)) == decode([stream])


@settings(max_examples=200, deadline=None)
@given(data=corrupted_streams())
def test_it_recovers_every_intact_frame_and_skips_exactly_the_rest(
    data: tuple[bytes, list[tuple[bool, bytes]]],
) -> None:
    stream, pieces = data
    expected: list[tuple[str, int, int]] = []
    offset = 0
    for intact, piece in pieces:
        if intact:
            expected.append(("frame", offset, len(piece)))
        elif expected and expected[-1][0] == "skip" and sum(expected[-1][1:]) == offset:
            expected[-1] = ("skip", expected[-1][1], expected[-1][2] + len(piece))
        else:
            expected.append(("skip", offset, len(piece)))
        offset += len(piece)

    actual: list[tuple[str, int, int]] = []
    position = 0
    for item in decode([stream]):
        if isinstance(item, SkippedRegion):
            actual.append(("skip", item.offset, item.length))
            position = item.offset + item.length
        else:
            size = len(encode_message(item.headers, item.payload))
            actual.append(("frame", position, size))
            position += size

    assert actual == expected
