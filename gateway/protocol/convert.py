"""Convert an Anthropic Messages request into a Kiro generateAssistantResponse body (spec §2, §3).

`convert_request()` is pure: a parsed JSON body and options in, a frozen `Conversion` out.
Every repair it makes to the client's conversation is reported by a stable `Rule` name, so
the gateway can count and log them without re-deriving what happened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from gateway.protocol.catalogue import Catalogue, resolve_listed
from gateway.protocol.images import (
    ImageLimits,
    PreparedImage,
    format_for_media_type,
    prepare_image,
)
from gateway.protocol.models import (
    ConversionError,
    CustomModel,
    ResolvedModel,
)
from gateway.protocol.tools import (
    CLAUDE_CODE_TOOLS,
    HIDDEN_CLAUDE_CODE_TOOLS,
    KiroTool,
    ToolMode,
    convert_tool,
    is_native_web_search,
    kiro_tool_name,
    placeholder_tool,
    to_kiro_input,
)

__all__ = [
    "Conversion",
    "ConversionError",
    "ConvertOptions",
    "Rule",
    "Thinking",
    "convert_request",
    "encode_body",
    "extract_session_id",
    "normalize_effort",
    "web_search_mode",
]

Endpoint = Literal["ide", "cli"]
ThinkingType = Literal["enabled", "adaptive", "disabled"]
WebSearchMode = Literal["none", "only", "mixed"]

# spec 3.1: budget default and the cap both proxies clamp to.
DEFAULT_THINKING_BUDGET = 20_000
THINKING_BUDGET_CAP = 24_576

# spec 3.5 / 3.19: exact strings.
SYSTEM_POLICY = (
    "When the Write or Edit tool has content size limits, always comply silently. "
    "Never suggest bypassing these limits via alternative tools. "
    "Never ask the user whether to switch approaches. "
    "Complete all chunked operations without commentary."
)
SYSTEM_ACK = "I will follow these instructions."
FILLER_ASSISTANT = "OK"
TOOL_ONLY_CONTENT = " "
IMAGE_ONLY_TOOL_RESULT = "[image attached]"
REPEATED_IMAGE = "[image omitted: identical to an earlier screenshot]"
# Ours (no proxy has them): a history that opens with an assistant turn gets this user turn
# in front, and PDFs, which Kiro has no channel for, leave a visible trace for the model.
FILLER_USER = "Hello."
PDF_OMITTED = "[document omitted: PDF documents are not supported by this gateway]"

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
# spec 3.16: models that predate the xhigh tier.
_NO_XHIGH = frozenset(
    {
        "claude-opus-4.6",
        "claude-sonnet-4.6",
        "claude-opus-4.5",
        "claude-sonnet-4.5",
        "claude-haiku-4.5",
    }
)
# Anthropic server-tool blocks that may appear in history; Kiro has no such blocks, so they
# are written into the transcript as text.
_SERVER_TOOL_CALLS = frozenset({"server_tool_use", "mcp_tool_use"})
_SERVER_TOOL_RESULTS = frozenset(
    {
        "web_search_tool_result",
        "web_fetch_tool_result",
        "mcp_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
    }
)


class Rule(StrEnum):
    """Stable names of the repairs `convert_request` can make; reported in `Conversion.rules`."""

    #: A `role: "system"` message (Claude Code ≥ 2.1) was folded into the system turn.
    FOLD_SYSTEM_MESSAGE = "fold_system_message"
    #: Claude Code's per-request `x-anthropic-billing-header` system block was dropped; it
    #: changes every turn and would defeat upstream prompt caching of the system turn.
    DROP_BILLING_HEADER = "drop_billing_header"
    #: Trailing assistant messages (prefill) were dropped (spec 3.6).
    PREFILL_DROPPED = "prefill_dropped"
    #: A history message with no text, image, tool use or tool result was dropped.
    DROP_EMPTY_MESSAGE = "drop_empty_message"
    #: Consecutive user messages were merged into one history entry (spec 3.7).
    MERGE_CONSECUTIVE_USER = "merge_consecutive_user"
    #: Consecutive assistant messages were merged into one history entry (spec 3.7).
    MERGE_CONSECUTIVE_ASSISTANT = "merge_consecutive_assistant"
    #: The `OK` assistant entry was added after trailing user messages (spec 3.7).
    INSERT_PLACEHOLDER_ASSISTANT = "insert_placeholder_assistant"
    #: A user entry was put before a history that opened with an assistant turn.
    INSERT_PLACEHOLDER_USER = "insert_placeholder_user"
    #: A tool_result that answers no tool_use of the preceding assistant turn was dropped.
    DROP_ORPHAN_TOOL_RESULT = "drop_orphan_tool_result"
    #: A second tool_result for an already answered tool_use was dropped (spec 3.9).
    DROP_DUPLICATE_TOOL_RESULT = "drop_duplicate_tool_result"
    #: A tool_use reusing the id of an earlier one was removed; ids must be unique.
    DROP_DUPLICATE_TOOL_USE = "drop_duplicate_tool_use"
    #: A history tool_use that never got a tool_result was removed (spec 3.9).
    DROP_ORPHAN_TOOL_USE = "drop_orphan_tool_use"
    #: A tool used in history but not declared was declared with a placeholder (spec 3.10).
    PLACEHOLDER_TOOL = "placeholder_tool"
    #: A tool name over 63 bytes was shortened; see `tool_name_map` (spec 3.12).
    SHORTEN_TOOL_NAME = "shorten_tool_name"
    #: A tool description was cut to 10,000 characters (spec 3.11).
    TRUNCATE_TOOL_DESCRIPTION = "truncate_tool_description"
    #: A tool's input_schema was rewritten into a shape Kiro accepts (spec 3.11).
    NORMALIZE_TOOL_SCHEMA = "normalize_tool_schema"
    #: A second tool with the same (case-insensitive) upstream name was dropped (spec 3.11).
    DROP_DUPLICATE_TOOL = "drop_duplicate_tool"
    #: A tool hidden in Claude-Code mode (`fs_append`) was dropped (spec 3.11).
    HIDE_TOOL = "hide_tool"
    #: A Claude Code tool was renamed to a Kiro built-in (spec 3.13).
    MAP_CLAUDE_CODE_TOOL = "map_claude_code_tool"
    #: An image over the size limits was downscaled and re-encoded as JPEG (spec 3.14).
    RESIZE_IMAGE = "resize_image"
    #: An image's format was taken from its magic bytes, not its media type (spec 3.14).
    CORRECT_IMAGE_FORMAT = "correct_image_format"
    #: An image with a media type Kiro does not take (e.g. `image/jpg`) was dropped (3.14).
    DROP_UNSUPPORTED_IMAGE = "drop_unsupported_image"
    #: A history image identical to an earlier one was replaced by a note (spec 3.14).
    DEDUPE_HISTORY_IMAGE = "dedupe_history_image"
    #: Images inside a tool_result were moved to the message's images (spec 3.8).
    LIFT_TOOL_RESULT_IMAGE = "lift_tool_result_image"
    #: A PDF document block was replaced by a note (Kiro has no document input).
    OMIT_PDF_DOCUMENT = "omit_pdf_document"
    #: A server-tool block (web search, MCP, code execution) was written into the text.
    SERIALIZE_SERVER_TOOL = "serialize_server_tool"
    #: A block that is not valid in its role (tool_use from the user, …) was dropped.
    DROP_MISPLACED_BLOCK = "drop_misplaced_block"
    #: `thinking.budget_tokens` was clamped to the budget cap (spec 3.1).
    CLAMP_THINKING_BUDGET = "clamp_thinking_budget"
    #: The `-thinking` model suffix replaced the request's thinking settings (spec 3.3).
    THINKING_FROM_MODEL_SUFFIX = "thinking_from_model_suffix"
    #: No credential of the key lists the model: the newest listed model of its family was
    #: sent (protocol.catalogue).
    MODEL_FALLBACK = "model_fallback"
    #: No credential lists the model nor its family: the operator's default model was sent.
    MODEL_DEFAULT = "model_default"


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """Per-request knobs the gateway passes in; defaults follow Z."""

    custom_models: tuple[CustomModel, ...] = ()
    #: The ids the key's credentials list; None sends the normalised id whatever it is.
    catalogue: Catalogue | None = None
    tool_mode: ToolMode = "claude-code"
    endpoint: Endpoint = "ide"
    profile_arn: str | None = None
    #: Used when `metadata.user_id` carries no session id (spec 3.15); random when None.
    conversation_id: str | None = None
    #: Random when None (spec 2.2); fixed values make bodies reproducible in tests.
    agent_continuation_id: str | None = None
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    thinking_budget_cap: int = THINKING_BUDGET_CAP
    #: spec 2.4 (Z): `envState` on the current message and on history tool-result turns.
    env_state: bool = True
    operating_system: str = "macos"
    working_directory: str = "/"


@dataclass(frozen=True, slots=True)
class Thinking:
    """The thinking mode the request ends up with (after the `-thinking` override)."""

    type: ThinkingType
    budget_tokens: int | None = None
    effort: str | None = None

    @property
    def enabled(self) -> bool:
        return self.type != "disabled"


@dataclass(frozen=True, slots=True)
class Conversion:
    """The Kiro body plus what the response side and the logs need to know."""

    kiro_body: dict[str, Any]
    model: ResolvedModel
    thinking: Thinking
    tool_name_map: Mapping[str, str]
    rules: tuple[Rule, ...]
    web_search: WebSearchMode
    conversation_id: str
    stream: bool
    max_tokens: int | None
    image_base64_bytes: int


# --- intermediate, request-local state ------------------------------------------------------


@dataclass(slots=True)
class _User:
    texts: list[str] = field(default_factory=list)
    images: list[PreparedImage] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.texts)

    def is_empty(self) -> bool:
        return not self.text().strip() and not self.images and not self.results


@dataclass(slots=True)
class _Assistant:
    content: str
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.content.strip() and not self.tool_uses


@dataclass(slots=True)
class _State:
    """Mutable bookkeeping of one conversion; never outlives `convert_request`."""

    options: ConvertOptions
    rules: list[Rule] = field(default_factory=list)
    tool_name_map: dict[str, str] = field(default_factory=dict)
    seen_images: set[str] = field(default_factory=set)

    def fire(self, rule: Rule) -> None:
        if rule not in self.rules:
            self.rules.append(rule)


# --- public API ----------------------------------------------------------------------------


def convert_request(body: Mapping[str, Any], *, options: ConvertOptions) -> Conversion:
    """Convert one Anthropic `/v1/messages` body into a Kiro request, or raise ConversionError."""
    if not isinstance(body, Mapping):
        raise ConversionError("body", "must be a JSON object")
    state = _State(options)
    if "model" not in body:
        raise ConversionError("model", "required")
    model = resolve_listed(
        body["model"], custom_models=options.custom_models, catalogue=options.catalogue
    )
    if model.substitution is not None:
        state.fire(Rule(model.substitution))
    max_tokens = _max_tokens(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ConversionError("messages", "must be a list")
    if not messages:
        raise ConversionError("messages", "must not be empty")

    system_texts, folded_effort, dialogue = _split_system_messages(messages, state)
    effort_raw = _effort_of(body.get("output_config"), "output_config") or folded_effort
    thinking = _thinking(body.get("thinking"), model, effort_raw, state)

    last_user = max((i for i, (_, role, _) in enumerate(dialogue) if role == "user"), default=None)
    if last_user is None:
        raise ConversionError("messages", "must contain at least one user message")
    if last_user < len(dialogue) - 1:
        state.fire(Rule.PREFILL_DROPPED)  # spec 3.6
    dialogue = dialogue[: last_user + 1]

    *earlier, (current_index, _, current_content) = dialogue
    turns: list[_User | _Assistant] = []
    for index, role, content in earlier:
        path = f"messages.{index}.content"
        turn: _User | _Assistant = (
            _parse_user(content, path, state, history=True)
            if role == "user"
            else _parse_assistant(content, path, state)
        )
        if turn.is_empty():
            state.fire(Rule.DROP_EMPTY_MESSAGE)
            continue
        turns.append(turn)
    current_path = f"messages.{current_index}.content"
    current = _parse_user(current_content, current_path, state, history=False)

    system = _system_text(body.get("system"), system_texts, state)
    history: list[_User | _Assistant] = []
    prefix = _thinking_prefix(thinking)
    if system is not None:
        if prefix and "<thinking_mode>" not in system and "<max_thinking_length>" not in system:
            system = f"{prefix}\n{system}"
        history += [_User([system]), _Assistant(SYSTEM_ACK)]
    elif prefix:
        # spec 3.4: no system at all -> the prefix alone becomes the first user turn.
        history += [_User([prefix]), _Assistant(SYSTEM_ACK)]
    history += _alternate(turns, state)

    _repair_tool_pairing(history, current, state)
    tools = _tools(body.get("tools"), history, state)
    conversation_id = _conversation_id(body.get("metadata"), options)
    kiro_body = _assemble(
        history=history,
        current=current,
        tools=tools,
        model=model,
        conversation_id=conversation_id,
        extra_fields=_additional_fields(body, model, thinking, effort_raw),
        options=options,
    )
    return Conversion(
        kiro_body=kiro_body,
        model=model,
        thinking=thinking,
        tool_name_map=MappingProxyType(dict(state.tool_name_map)),
        rules=tuple(state.rules),
        web_search=web_search_mode(body),
        conversation_id=conversation_id,
        stream=body.get("stream") is True,
        max_tokens=max_tokens,
        image_base64_bytes=_image_bytes([*history, current]),
    )


def _image_bytes(turns: list[_User | _Assistant]) -> int:
    """Sum the inline base64 of all images (Z warns above 800 KiB, spec 3.14)."""
    return sum(
        len(image.data) for turn in turns if isinstance(turn, _User) for image in turn.images
    )


def encode_body(kiro_body: Mapping[str, Any]) -> bytes:
    """Serialize a Kiro body the way the proxies put it on the wire (spec 2.10).

    Compact, raw UTF-8, every object's keys sorted: what serde_json produces once the body
    has been re-parsed for profileArn injection, i.e. in almost all real traffic.
    """
    return json.dumps(
        kiro_body, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    ).encode()


def web_search_mode(body: Mapping[str, Any]) -> WebSearchMode:
    """Tell how the gateway must route web search (spec 3.17, Z's rule)."""
    tools = body.get("tools") if isinstance(body, Mapping) else None
    if not isinstance(tools, list) or not tools:
        return "none"
    native = [isinstance(tool, Mapping) and is_native_web_search(tool) for tool in tools]
    if len(tools) == 1 and native[0]:
        return "only"
    return "mixed" if any(native) else "none"


def extract_session_id(user_id: object) -> str | None:
    """Find the client session UUID in `metadata.user_id` (spec 3.15).

    The proxies accept anything 36 characters long with four hyphens; we require a real
    UUID so that a random string never becomes a conversation id.
    """
    if not isinstance(user_id, str):
        return None
    try:
        parsed = json.loads(user_id)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        session = parsed.get("session_id")
        if isinstance(session, str) and _UUID.match(session):
            return session
    marker = user_id.find("session_")
    if marker >= 0:
        candidate = user_id[marker + len("session_") : marker + len("session_") + 36]
        if _UUID.match(candidate):
            return candidate
    return None


def normalize_effort(raw: str, model: ResolvedModel) -> str:
    """Normalise a reasoning effort for a model (spec 3.16)."""
    effort = re.sub(r"\s+", "", raw).lower().replace("x-high", "xhigh").replace("x_high", "xhigh")
    if effort == "none":
        return "none" if model.is_gpt else "high"
    if effort not in _EFFORTS:
        return "high"
    if effort == "xhigh" and model.upstream_id.lower() in _NO_XHIGH:
        return "high"
    return effort


# --- top-level fields ----------------------------------------------------------------------


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    """Validate `max_tokens` (spec 3.1, Z: optional, must be positive, never forwarded)."""
    value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConversionError("max_tokens", "must be an integer")
    if value <= 0:
        raise ConversionError("max_tokens", "must be greater than 0")
    return value


def _split_system_messages(
    messages: list[Any], state: _State
) -> tuple[list[str], str | None, list[tuple[int, str, Any]]]:
    """Validate roles; pull `role: "system"` messages out of the dialogue.

    Claude Code 2.1.330 sends its environment block as a system-role message (with its own
    `output_config`), even last in the list; it belongs in the system turn, not the dialogue.
    """
    system_texts: list[str] = []
    effort: str | None = None
    dialogue: list[tuple[int, str, Any]] = []
    for index, message in enumerate(messages):
        path = f"messages.{index}"
        if not isinstance(message, Mapping):
            raise ConversionError(path, "must be an object")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise ConversionError(
                f"{path}.role", f"must be 'user', 'assistant' or 'system', got {role!r}"
            )
        if "content" not in message:
            raise ConversionError(f"{path}.content", "required")
        content = message["content"]
        if not isinstance(content, str | list):
            raise ConversionError(f"{path}.content", "must be a string or a list of blocks")
        if role == "system":
            state.fire(Rule.FOLD_SYSTEM_MESSAGE)
            system_texts.extend(_system_block_texts(content, f"{path}.content", state))
            effort = _effort_of(message.get("output_config"), f"{path}.output_config") or effort
            continue
        dialogue.append((index, role, content))
    return system_texts, effort, dialogue


def _system_text(raw: object, folded: list[str], state: _State) -> str | None:
    """Build the system turn text, or None when there is no system (spec 3.5)."""
    texts = [] if raw is None else _system_block_texts(raw, "system", state)
    joined = "\n".join([*texts, *folded])
    # spec 3.4 edge: the proxies send neither system nor thinking prefix when `system` joins
    # to ""; we treat that like an absent system, so the thinking prefix still goes out.
    if not joined.strip():
        return None
    return f"{joined}\n{SYSTEM_POLICY}"


def _system_block_texts(raw: object, path: str, state: _State) -> list[str]:
    """Return the texts of a string-or-text-blocks system value."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise ConversionError(path, "must be a string or a list of text blocks")
    texts: list[str] = []
    for index, block in enumerate(raw):
        if not isinstance(block, Mapping) or not isinstance(block.get("text"), str):
            raise ConversionError(f"{path}.{index}", "must be a text block with a string 'text'")
        if block.get("type", "text") != "text":
            raise ConversionError(f"{path}.{index}.type", "system blocks must be of type 'text'")
        text: str = block["text"]
        if text.startswith(BILLING_HEADER_PREFIX):
            state.fire(Rule.DROP_BILLING_HEADER)
            continue
        texts.append(text)
    return texts


def _effort_of(output_config: object, path: str) -> str | None:
    """Return a non-blank `output_config.effort`, or None."""
    if output_config is None:
        return None
    if not isinstance(output_config, Mapping):
        raise ConversionError(path, "must be an object")
    effort = output_config.get("effort")
    if effort is None:
        return None
    if not isinstance(effort, str):
        raise ConversionError(f"{path}.effort", "must be a string")
    return effort if effort.strip() else None


def _thinking(raw: object, model: ResolvedModel, effort_raw: str | None, state: _State) -> Thinking:
    """Resolve the thinking mode: model suffix override (3.3), then the field (3.1, 3.4)."""
    cap = state.options.thinking_budget_cap
    if model.thinking_forced:
        state.fire(Rule.THINKING_FROM_MODEL_SUFFIX)
        budget = min(DEFAULT_THINKING_BUDGET, cap)
        if model.upstream_id == "claude-opus-4.6":
            # spec 3.3: Opus 4.6 only reasons natively in adaptive mode, effort forced high.
            return Thinking("adaptive", budget, "high")
        return Thinking("enabled", budget, None)
    if raw is None:
        return Thinking("disabled")
    if not isinstance(raw, Mapping):
        raise ConversionError("thinking", "must be an object")
    kind = raw.get("type")
    if kind == "enabled":
        budget = raw.get("budget_tokens", DEFAULT_THINKING_BUDGET)
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise ConversionError("thinking.budget_tokens", "must be an integer")
        if budget <= 0:
            raise ConversionError("thinking.budget_tokens", "must be greater than 0")
        if budget > cap:
            state.fire(Rule.CLAMP_THINKING_BUDGET)
            budget = cap
        return Thinking("enabled", budget, None)
    if kind == "adaptive":
        effort = normalize_effort(effort_raw, model) if effort_raw else "high"
        return Thinking("adaptive", None, effort)
    return Thinking("disabled")


def _thinking_prefix(thinking: Thinking) -> str | None:
    """Build the §3.4 prompt tags."""
    if thinking.type == "enabled":
        return (
            "<thinking_mode>enabled</thinking_mode>"
            f"<max_thinking_length>{thinking.budget_tokens}</max_thinking_length>"
        )
    if thinking.type == "adaptive":
        return (
            "<thinking_mode>adaptive</thinking_mode>"
            f"<thinking_effort>{thinking.effort}</thinking_effort>"
        )
    return None


def _additional_fields(
    body: Mapping[str, Any], model: ResolvedModel, thinking: Thinking, effort_raw: str | None
) -> dict[str, Any] | None:
    """Build `additionalModelRequestFields` for models with native reasoning (spec 3.16)."""
    raw_thinking = body.get("thinking")
    explicitly_disabled = (
        not model.thinking_forced
        and isinstance(raw_thinking, Mapping)
        and raw_thinking.get("type") == "disabled"
    )
    if explicitly_disabled or not model.supports_reasoning:
        return None
    if model.upstream_id == "claude-opus-4.6":
        requested = thinking.type == "adaptive"
    else:
        requested = thinking.enabled or effort_raw is not None
    if not requested:
        return None
    if thinking.effort is not None:
        effort = thinking.effort
    elif effort_raw is not None:
        effort = normalize_effort(effort_raw, model)
    elif thinking.budget_tokens is not None:
        effort = normalize_effort(_effort_for_budget(thinking.budget_tokens), model)
    else:
        effort = "high"
    if model.is_gpt:
        return {"reasoning": {"effort": effort}}
    return {"output_config": {"effort": effort}}


def _effort_for_budget(budget: int) -> str:
    """Derive an effort tier from a thinking budget (spec 3.16)."""
    if budget <= 4_000:
        return "low"
    if budget <= 16_000:
        return "medium"
    if budget <= 64_000:
        return "high"
    return "xhigh"


def _conversation_id(metadata: object, options: ConvertOptions) -> str:
    """Pick the conversationId: client session, then the caller's id, then random (3.15)."""
    if isinstance(metadata, Mapping):
        session = extract_session_id(metadata.get("user_id"))
        if session is not None:
            return session
    return options.conversation_id or str(uuid.uuid4())


# --- message content -----------------------------------------------------------------------


def _blocks(content: str | list[Any], path: str) -> list[tuple[str, Mapping[str, Any]]]:
    """Return (path, block) pairs, checking each block is an object with a string type."""
    if isinstance(content, str):
        return [(path, {"type": "text", "text": content})]
    pairs = []
    for index, block in enumerate(content):
        block_path = f"{path}.{index}"
        if not isinstance(block, Mapping):
            raise ConversionError(block_path, "must be an object")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise ConversionError(f"{block_path}.type", "required string")
        pairs.append((block_path, block))
    return pairs


def _text_of(block: Mapping[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise ConversionError(f"{path}.text", "must be a string")
    return text


def _parse_user(content: str | list[Any], path: str, state: _State, *, history: bool) -> _User:
    """Extract texts, images and tool results of one user message (spec 3.8)."""
    turn = _User()
    for block_path, block in _blocks(content, path):
        kind = block["type"]
        if kind == "text":
            turn.texts.append(_text_of(block, block_path))
        elif kind == "image":
            note = _add_image(block, block_path, turn.images, state, history=history)
            if note is not None:
                turn.texts.append(note)
        elif kind == "document":
            _add_document(block, block_path, turn, state, history=history)
        elif kind == "search_result":
            turn.texts.append(_search_result_text(block))
        elif kind == "tool_result":
            turn.results.append(_tool_result(block, block_path, turn, state, history=history))
        elif kind in _SERVER_TOOL_CALLS or kind in _SERVER_TOOL_RESULTS:
            state.fire(Rule.SERIALIZE_SERVER_TOOL)
            turn.texts.append(_server_block_text(block))
        elif kind in ("tool_use", "thinking", "redacted_thinking", "container_upload"):
            state.fire(Rule.DROP_MISPLACED_BLOCK)
        else:
            raise ConversionError(block_path, f"unknown block type {kind!r}")
    return turn


def _parse_assistant(content: str | list[Any], path: str, state: _State) -> _Assistant:
    """Convert one assistant message (spec 3.7); signatures and redacted thinking are dropped."""
    thinking: list[str] = []
    text = ""
    tool_uses: list[dict[str, Any]] = []
    for block_path, block in _blocks(content, path):
        kind = block["type"]
        if kind == "text":
            text += _text_of(block, block_path)
        elif kind == "thinking":
            value = block.get("thinking")
            if not isinstance(value, str):
                raise ConversionError(f"{block_path}.thinking", "must be a string")
            thinking.append(value)
        elif kind == "tool_use":
            tool_uses.append(_tool_use(block, block_path, state))
        elif kind in _SERVER_TOOL_CALLS or kind in _SERVER_TOOL_RESULTS:
            state.fire(Rule.SERIALIZE_SERVER_TOOL)
            rendered = _server_block_text(block)
            text += rendered if not text or text.endswith("\n") else f"\n{rendered}"
            text += "\n"
        elif kind == "redacted_thinking":
            continue
        elif kind in ("image", "document", "tool_result", "search_result", "container_upload"):
            state.fire(Rule.DROP_MISPLACED_BLOCK)
        else:
            raise ConversionError(block_path, f"unknown block type {kind!r}")
    joined = "".join(thinking)
    if joined and text:
        body = f"<thinking>{joined}</thinking>\n\n{text}"
    elif joined:
        body = f"<thinking>{joined}</thinking>"
    elif not text and tool_uses:
        body = TOOL_ONLY_CONTENT
    else:
        body = text
    return _Assistant(body, tool_uses)


def _tool_use(block: Mapping[str, Any], path: str, state: _State) -> dict[str, Any]:
    """Convert a history tool_use, renaming it as the current tools are renamed (3.12, 3.13)."""
    tool_id, name = block.get("id"), block.get("name")
    if not isinstance(tool_id, str) or not tool_id:
        raise ConversionError(f"{path}.id", "required string")
    if not isinstance(name, str) or not name:
        raise ConversionError(f"{path}.name", "required string")
    tool_input = block.get("input")
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, Mapping):
        raise ConversionError(f"{path}.input", "must be an object")
    mode = state.options.tool_mode
    kiro_name = kiro_tool_name(name, mode)
    if kiro_name != name:
        state.tool_name_map.setdefault(kiro_name, name)
        renamed_builtin = mode == "claude-code" and name in CLAUDE_CODE_TOOLS
        state.fire(Rule.MAP_CLAUDE_CODE_TOOL if renamed_builtin else Rule.SHORTEN_TOOL_NAME)
    return {
        "toolUseId": tool_id,
        "name": kiro_name,
        "input": dict(to_kiro_input(name, dict(tool_input), mode=mode)),
    }


def _tool_result(
    block: Mapping[str, Any], path: str, turn: _User, state: _State, *, history: bool
) -> dict[str, Any]:
    """Convert a tool_result, flattening its content to text (spec 2.7, 3.8)."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise ConversionError(f"{path}.tool_use_id", "required string")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = _flatten_result(content, f"{path}.content", turn, state, history=history)
    else:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    is_error = block.get("is_error") is True
    result: dict[str, Any] = {
        "toolUseId": tool_use_id,
        "content": [{"text": text}],
        "status": "error" if is_error else "success",
    }
    if is_error:
        result["isError"] = True
    return result


def _flatten_result(
    items: list[Any], path: str, turn: _User, state: _State, *, history: bool
) -> str:
    """Join a tool_result's text items; lift its images to the message (spec 3.8, Z)."""
    parts: list[str] = []
    had_image = False
    for index, item in enumerate(items):
        item_path = f"{path}.{index}"
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind == "image":
            had_image = True
            state.fire(Rule.LIFT_TOOL_RESULT_IMAGE)
            note = _add_image(item, item_path, turn.images, state, history=history)
            if note is not None:
                parts.append(note)
        elif kind == "document":
            sink = _User()
            _add_document(item, item_path, sink, state, history=history)
            turn.images.extend(sink.images)
            parts.extend(sink.texts)
        elif kind == "search_result":
            parts.append(_search_result_text(item))
        elif kind == "tool_reference" and isinstance(item.get("tool_name"), str):
            # Claude Code's ToolSearch answers with references to deferred tools.
            parts.append(f"Tool available: {item['tool_name']}")
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            parts.append(item["text"])
        else:
            parts.append(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
    if not parts and had_image:
        return IMAGE_ONLY_TOOL_RESULT
    return "\n".join(parts)


def _add_image(
    block: Mapping[str, Any],
    path: str,
    images: list[PreparedImage],
    state: _State,
    *,
    history: bool,
) -> str | None:
    """Append one image block to `images`; return a note to put in the text instead, if any."""
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise ConversionError(f"{path}.source", "required object")
    kind = source.get("type")
    if kind in ("url", "file"):
        raise ConversionError(
            f"{path}.source.type",
            f"{kind} images are not supported by this gateway; send the image as base64",
        )
    if kind != "base64":
        raise ConversionError(f"{path}.source.type", f"unsupported image source {kind!r}")
    declared = format_for_media_type(source.get("media_type"))
    if declared is None:
        state.fire(Rule.DROP_UNSUPPORTED_IMAGE)  # spec 3.14 / 13.3 case 45
        return None
    data = source.get("data")
    if history and isinstance(data, str):
        digest = hashlib.sha256(data.encode()).hexdigest()
        if digest in state.seen_images:
            # spec 3.14 (Z): a screenshot repeated in history is sent once.
            state.fire(Rule.DEDUPE_HISTORY_IMAGE)
            return REPEATED_IMAGE
        state.seen_images.add(digest)
    image = prepare_image(
        data, declared, limits=state.options.image_limits, field=f"{path}.source.data"
    )
    if image.resized:
        state.fire(Rule.RESIZE_IMAGE)
    if image.format_corrected:
        state.fire(Rule.CORRECT_IMAGE_FORMAT)
    images.append(image)
    return None


def _add_document(
    block: Mapping[str, Any], path: str, turn: _User, state: _State, *, history: bool
) -> None:
    """Turn a document block into text (and images), since Kiro has no document input."""
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise ConversionError(f"{path}.source", "required object")
    header = [value for key in ("title", "context") if isinstance(value := block.get(key), str)]
    kind = source.get("type")
    if kind == "text":
        data = source.get("data")
        if not isinstance(data, str):
            raise ConversionError(f"{path}.source.data", "must be a string")
        turn.texts.append("\n".join([*header, data]))
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            inner = [{"type": "text", "text": inner}]
        if not isinstance(inner, list):
            raise ConversionError(f"{path}.source.content", "must be a string or a list")
        sink = _parse_user(inner, f"{path}.source.content", state, history=history)
        turn.texts.append("\n".join([*header, sink.text()]))
        turn.images.extend(sink.images)
    elif kind == "base64" and source.get("media_type") == "text/plain":
        data = source.get("data")
        try:
            text = _b64_text(data)
        except ValueError as exc:
            raise ConversionError(f"{path}.source.data", "not valid base64 UTF-8 text") from exc
        turn.texts.append("\n".join([*header, text]))
    elif kind == "base64":
        # Kiro takes no documents and we cannot extract PDF text without a PDF library;
        # refusing would make the whole session unusable once a PDF is in its history.
        state.fire(Rule.OMIT_PDF_DOCUMENT)
        turn.texts.append("\n".join([*header, PDF_OMITTED]))
    elif kind in ("url", "file"):
        raise ConversionError(
            f"{path}.source.type",
            f"{kind} documents are not supported by this gateway; send the content inline",
        )
    else:
        raise ConversionError(f"{path}.source.type", f"unsupported document source {kind!r}")


def _b64_text(data: object) -> str:
    """Decode base64 UTF-8 text."""
    if not isinstance(data, str):
        raise ValueError("not a string")
    try:
        return base64.b64decode(data, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from exc


def _search_result_text(block: Mapping[str, Any]) -> str:
    """Render a search_result block as plain text."""
    lines = [str(block[key]) for key in ("title", "source") if isinstance(block.get(key), str)]
    content = block.get("content")
    if isinstance(content, list):
        lines += [
            item["text"]
            for item in content
            if isinstance(item, Mapping) and isinstance(item.get("text"), str)
        ]
    return "\n".join(lines)


def _server_block_text(block: Mapping[str, Any]) -> str:
    """Write a server-tool call or result into the transcript as text.

    Kiro knows no server tools; replaying them as text keeps what was searched and found
    visible to the model instead of silently losing it.
    """
    kind = block["type"]
    if kind in _SERVER_TOOL_CALLS:
        tool_input = json.dumps(block.get("input", {}), ensure_ascii=False, separators=(",", ":"))
        return f"[{block.get('name', 'server_tool')} call: {tool_input}]"
    content = block.get("content")
    if kind == "web_search_tool_result" and isinstance(content, list):
        lines = ["[web_search results:"]
        for item in content:
            if isinstance(item, Mapping) and item.get("type") == "web_search_result":
                lines.append(f"- {item.get('title', '')} <{item.get('url', '')}>")
        return "\n".join(lines) + "]"
    if isinstance(content, Mapping) and isinstance(content.get("error_code"), str):
        return f"[{kind}: error {content['error_code']}]"
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    return f"[{kind}: {text}]"


# --- history -------------------------------------------------------------------------------


def _alternate(turns: list[_User | _Assistant], state: _State) -> list[_User | _Assistant]:
    """Merge same-role runs and close with an assistant turn (spec 3.7)."""
    merged: list[_User | _Assistant] = []
    for turn in turns:
        previous = merged[-1] if merged else None
        if isinstance(turn, _User) and isinstance(previous, _User):
            state.fire(Rule.MERGE_CONSECUTIVE_USER)
            merged[-1] = _merge_users(previous, turn)
        elif isinstance(turn, _Assistant) and isinstance(previous, _Assistant):
            state.fire(Rule.MERGE_CONSECUTIVE_ASSISTANT)
            merged[-1] = _merge_assistants(previous, turn)
        else:
            merged.append(turn)
    if merged and isinstance(merged[0], _Assistant):
        # The proxies let such a history start with an assistant turn right after the
        # system pair's assistant; Kiro expects user/assistant pairs, so open with a user.
        state.fire(Rule.INSERT_PLACEHOLDER_USER)
        merged.insert(0, _User([FILLER_USER]))
    if merged and isinstance(merged[-1], _User):
        state.fire(Rule.INSERT_PLACEHOLDER_ASSISTANT)
        merged.append(_Assistant(FILLER_ASSISTANT))
    return merged


def _merge_users(first: _User, second: _User) -> _User:
    """Merge two user turns: non-empty texts joined with a newline (spec 3.7)."""
    texts = [text for text in (first.text(), second.text()) if text]
    return _User(
        ["\n".join(texts)] if texts else [],
        first.images + second.images,
        first.results + second.results,
    )


def _merge_assistants(first: _Assistant, second: _Assistant) -> _Assistant:
    """Merge two assistant turns: non-blank contents joined by a blank line (spec 3.7)."""
    contents = [c for c in (first.content, second.content) if c.strip()]
    tool_uses = first.tool_uses + second.tool_uses
    content = "\n\n".join(contents) if contents else (TOOL_ONLY_CONTENT if tool_uses else "")
    return _Assistant(content, tool_uses)


def _repair_tool_pairing(history: list[_User | _Assistant], current: _User, state: _State) -> None:
    """Make every tool_result answer a tool_use of the turn right before it, and vice versa.

    spec 3.9 checks only the current message against all of history; Kiro (like Anthropic)
    wants each assistant turn's calls answered in the very next user turn, so we check
    every user turn against its predecessor. Every §3.9 case still comes out the same.
    """
    turns = [*history, current]
    seen: set[str] = set()
    for turn in turns:
        if not isinstance(turn, _Assistant):
            continue
        unique = []
        for use in turn.tool_uses:
            if use["toolUseId"] in seen:
                state.fire(Rule.DROP_DUPLICATE_TOOL_USE)
                continue
            seen.add(use["toolUseId"])
            unique.append(use)
        turn.tool_uses = unique
    all_ids = seen
    for position, turn in enumerate(turns):
        if not isinstance(turn, _User):
            continue
        previous = turns[position - 1] if position else None
        offered = (
            [use["toolUseId"] for use in previous.tool_uses]
            if isinstance(previous, _Assistant)
            else []
        )
        answered: set[str] = set()
        kept = []
        for result in turn.results:
            result_id = result["toolUseId"]
            if result_id in offered and result_id not in answered:
                answered.add(result_id)
                kept.append(result)
            elif result_id in all_ids:
                state.fire(Rule.DROP_DUPLICATE_TOOL_RESULT)
            else:
                state.fire(Rule.DROP_ORPHAN_TOOL_RESULT)
        turn.results = kept
        if isinstance(previous, _Assistant) and len(answered) < len(previous.tool_uses):
            state.fire(Rule.DROP_ORPHAN_TOOL_USE)
            # spec 3.9: the content is left as is (possibly " ").
            previous.tool_uses = [u for u in previous.tool_uses if u["toolUseId"] in answered]


# --- tools ---------------------------------------------------------------------------------


def _tools(raw: object, history: list[_User | _Assistant], state: _State) -> list[KiroTool]:
    """Convert the client tools, then declare placeholders for history-only tools (3.10-3.13)."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ConversionError("tools", "must be a list")
    mode = state.options.tool_mode
    specs: list[KiroTool] = []
    names: set[str] = set()
    for index, tool in enumerate(raw):
        path = f"tools.{index}"
        if not isinstance(tool, Mapping):
            raise ConversionError(path, "must be an object")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise ConversionError(f"{path}.name", "required string")
        if mode == "claude-code" and name in HIDDEN_CLAUDE_CODE_TOOLS:
            state.fire(Rule.HIDE_TOOL)
            continue
        converted = convert_tool(tool, mode=mode)
        kiro_name = converted.spec["toolSpecification"]["name"]
        if kiro_name.lower() in names:
            state.fire(Rule.DROP_DUPLICATE_TOOL)
            continue
        names.add(kiro_name.lower())
        specs.append(converted.spec)
        if kiro_name != name:
            state.tool_name_map.setdefault(kiro_name, name)
        for happened, rule in (
            (converted.shortened, Rule.SHORTEN_TOOL_NAME),
            (converted.truncated, Rule.TRUNCATE_TOOL_DESCRIPTION),
            (converted.schema_repaired, Rule.NORMALIZE_TOOL_SCHEMA),
            (converted.claude_code, Rule.MAP_CLAUDE_CODE_TOOL),
        ):
            if happened:
                state.fire(rule)
    for turn in history:
        if not isinstance(turn, _Assistant):
            continue
        for use in turn.tool_uses:
            if use["name"].lower() not in names:
                # spec 3.10: Kiro refuses history calls to undeclared tools.
                state.fire(Rule.PLACEHOLDER_TOOL)
                names.add(use["name"].lower())
                specs.append(placeholder_tool(use["name"]))
    return specs


# --- assembly ------------------------------------------------------------------------------


def _assemble(
    *,
    history: list[_User | _Assistant],
    current: _User,
    tools: list[KiroTool],
    model: ResolvedModel,
    conversation_id: str,
    extra_fields: dict[str, Any] | None,
    options: ConvertOptions,
) -> dict[str, Any]:
    """Lay the body out in serde struct order (spec 2.2-2.5, 2.10) for the ide or cli endpoint."""
    cli = options.endpoint == "cli"
    origin = "KIRO_CLI" if cli else "AI_EDITOR"  # spec 1.3: the cli rewrite of `origin`
    env_state = (
        {
            "operatingSystem": options.operating_system,
            "currentWorkingDirectory": options.working_directory,
        }
        if options.env_state
        else None
    )

    context: dict[str, Any] = {}
    if env_state is not None:
        context["envState"] = env_state
    if current.results:
        context["toolResults"] = current.results
    if tools:
        context["tools"] = tools
    user_input: dict[str, Any] = {
        "userInputMessageContext": context,
        "content": current.text(),
        "modelId": model.upstream_id,
    }
    if current.images:
        user_input["images"] = [image.to_kiro() for image in current.images]
    user_input["origin"] = origin

    entries: list[dict[str, Any]] = []
    for turn in history:
        if isinstance(turn, _Assistant):
            message: dict[str, Any] = {"content": turn.content}
            if turn.tool_uses:
                message["toolUses"] = turn.tool_uses
            entries.append({"assistantResponseMessage": message})
            continue
        entry: dict[str, Any] = {"content": turn.text()}
        if not cli:
            entry["modelId"] = model.upstream_id  # spec 1.3: cli drops it from history
        entry["origin"] = origin
        if turn.images:
            entry["images"] = [image.to_kiro() for image in turn.images]
        if turn.results:
            history_context: dict[str, Any] = {}
            if env_state is not None:
                history_context["envState"] = env_state
            history_context["toolResults"] = turn.results
            entry["userInputMessageContext"] = history_context
        entries.append({"userInputMessage": entry})

    state: dict[str, Any] = {}
    if not cli:
        state["agentContinuationId"] = options.agent_continuation_id or str(uuid.uuid4())
    state["agentTaskType"] = "vibe"
    state["chatTriggerType"] = "MANUAL"
    state["currentMessage"] = {"userInputMessage": user_input}
    state["conversationId"] = conversation_id
    if entries:
        state["history"] = entries
    body: dict[str, Any] = {"conversationState": state}
    if not cli and options.profile_arn:
        body["profileArn"] = options.profile_arn
    if extra_fields is not None:
        body["additionalModelRequestFields"] = extra_fields
    return body


def for_endpoint(
    kiro_body: Mapping[str, Any], *, endpoint: Endpoint, profile_arn: str | None
) -> dict[str, Any]:
    """Adapt an ide body to one credential: its endpoint and its profileArn (spec 1.2, 1.3).

    The pool picks the credential after conversion, so the body is converted once for the ide
    endpoint and adapted per attempt: ide bodies carry the credential's profileArn (API-key
    credentials none); cli bodies say KIRO_CLI, drop agentContinuationId, the history modelIds
    and any profileArn.
    """
    body = {key: value for key, value in kiro_body.items() if key != "profileArn"}
    if endpoint != "cli":
        if profile_arn:
            body["profileArn"] = profile_arn
        return body
    state = dict(body["conversationState"])
    state.pop("agentContinuationId", None)
    current = dict(state["currentMessage"]["userInputMessage"])
    current["origin"] = "KIRO_CLI"
    state["currentMessage"] = {"userInputMessage": current}
    history = []
    for entry in state.get("history") or []:
        if "userInputMessage" in entry:
            message = {k: v for k, v in entry["userInputMessage"].items() if k != "modelId"}
            message["origin"] = "KIRO_CLI"
            entry = {"userInputMessage": message}
        history.append(entry)
    if "history" in state:
        state["history"] = history
    body["conversationState"] = state
    return body
