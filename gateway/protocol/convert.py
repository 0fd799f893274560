"""Convert an Anthropic Messages request into a Kiro generateAssistantResponse body (spec §2, §3).

`convert_request()` is pure: a parsed JSON body and options in, a frozen `Conversion` out.
Every repair it makes to the client's conversation is reported by a stable `Rule` name, so
the gateway can count and log them without re-deriving what happened.

This module reads the top-level fields (model, system, thinking, effort, metadata) and lays
out the Kiro body; the messages are turned into turns by `convert_content` and their history
repaired by `convert_history`, over the shared `Rule`, `ConvertOptions` and turns of
`convert_turns`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from gateway.protocol.catalogue import resolve_listed
from gateway.protocol.convert_content import parse_assistant, parse_user
from gateway.protocol.convert_history import alternate, declare_tools, repair_tool_pairing
from gateway.protocol.convert_turns import (
    AssistantTurn,
    ConversionState,
    ConvertOptions,
    Endpoint,
    Rule,
    Turn,
    UserTurn,
)
from gateway.protocol.models import ConversionError, ResolvedModel
from gateway.protocol.tools import KiroTool, is_native_web_search

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

ThinkingType = Literal["enabled", "adaptive", "disabled"]
WebSearchMode = Literal["none", "only", "mixed"]

# spec 3.1: the budget default (the cap is convert_turns.THINKING_BUDGET_CAP).
DEFAULT_THINKING_BUDGET = 20_000

# spec 3.5 / 3.19: exact strings.
SYSTEM_POLICY = (
    "When the Write or Edit tool has content size limits, always comply silently. "
    "Never suggest bypassing these limits via alternative tools. "
    "Never ask the user whether to switch approaches. "
    "Complete all chunked operations without commentary."
)
SYSTEM_ACK = "I will follow these instructions."

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


# --- public API ----------------------------------------------------------------------------


def convert_request(body: Mapping[str, Any], *, options: ConvertOptions) -> Conversion:
    """Convert one Anthropic `/v1/messages` body into a Kiro request, or raise ConversionError."""
    if not isinstance(body, Mapping):
        raise ConversionError("body", "must be a JSON object")
    state = ConversionState(options)
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
    turns: list[Turn] = []
    for index, role, content in earlier:
        path = f"messages.{index}.content"
        turn: Turn = (
            parse_user(content, path, state, history=True)
            if role == "user"
            else parse_assistant(content, path, state)
        )
        if turn.is_empty():
            state.fire(Rule.DROP_EMPTY_MESSAGE)
            continue
        turns.append(turn)
    current_path = f"messages.{current_index}.content"
    current = parse_user(current_content, current_path, state, history=False)

    system = _system_text(body.get("system"), system_texts, state)
    history: list[Turn] = []
    prefix = _thinking_prefix(thinking)
    if system is not None:
        if prefix and "<thinking_mode>" not in system and "<max_thinking_length>" not in system:
            system = f"{prefix}\n{system}"
        history += [UserTurn([system]), AssistantTurn(SYSTEM_ACK)]
    elif prefix:
        # spec 3.4: no system at all -> the prefix alone becomes the first user turn.
        history += [UserTurn([prefix]), AssistantTurn(SYSTEM_ACK)]
    history += alternate(turns, state)

    repair_tool_pairing(history, current, state)
    tools = declare_tools(body.get("tools"), history, state)
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


def _image_bytes(turns: list[Turn]) -> int:
    """Sum the inline base64 of all images (Z warns above 800 KiB, spec 3.14)."""
    return sum(
        len(image.data) for turn in turns if isinstance(turn, UserTurn) for image in turn.images
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
    messages: list[Any], state: ConversionState
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


def _system_text(raw: object, folded: list[str], state: ConversionState) -> str | None:
    """Build the system turn text, or None when there is no system (spec 3.5)."""
    texts = [] if raw is None else _system_block_texts(raw, "system", state)
    joined = "\n".join([*texts, *folded])
    # spec 3.4 edge: the proxies send neither system nor thinking prefix when `system` joins
    # to ""; we treat that like an absent system, so the thinking prefix still goes out.
    if not joined.strip():
        return None
    return f"{joined}\n{SYSTEM_POLICY}"


def _system_block_texts(raw: object, path: str, state: ConversionState) -> list[str]:
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


def _thinking(
    raw: object, model: ResolvedModel, effort_raw: str | None, state: ConversionState
) -> Thinking:
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


# --- assembly ------------------------------------------------------------------------------


def _assemble(
    *,
    history: list[Turn],
    current: UserTurn,
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
        if isinstance(turn, AssistantTurn):
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
