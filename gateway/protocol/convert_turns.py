"""What the stages of the Anthropic -> Kiro conversion share (spec §2, §3).

The stable `Rule` names of the repairs, the per-request `ConvertOptions`, and the
request-local turns and bookkeeping that `gateway.protocol.convert` builds with
`convert_content` (message content) and repairs with `convert_history` (the history).
`Rule` and `ConvertOptions` belong to `gateway.protocol.convert`'s public API: import them
from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from gateway.protocol.catalogue import Catalogue
from gateway.protocol.images import ImageLimits, PreparedImage
from gateway.protocol.models import CustomModel
from gateway.protocol.tools import ToolMode

Endpoint = Literal["ide", "cli"]

# spec 3.1: the budget cap both proxies clamp to.
THINKING_BUDGET_CAP = 24_576
# spec 3.7: the content of an assistant turn that only calls tools.
TOOL_ONLY_CONTENT = " "


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


# --- intermediate, request-local state ------------------------------------------------------


@dataclass(slots=True)
class UserTurn:
    """One user turn: its texts, images and tool results."""

    texts: list[str] = field(default_factory=list)
    images: list[PreparedImage] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.texts)

    def is_empty(self) -> bool:
        return not self.text().strip() and not self.images and not self.results


@dataclass(slots=True)
class AssistantTurn:
    """One assistant turn: its content (thinking and text) and tool calls."""

    content: str
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.content.strip() and not self.tool_uses


@dataclass(slots=True)
class ConversionState:
    """Mutable bookkeeping of one conversion; never outlives `convert_request`."""

    options: ConvertOptions
    rules: list[Rule] = field(default_factory=list)
    tool_name_map: dict[str, str] = field(default_factory=dict)
    seen_images: set[str] = field(default_factory=set)

    def fire(self, rule: Rule) -> None:
        if rule not in self.rules:
            self.rules.append(rule)


#: A turn of the history being built.
Turn = UserTurn | AssistantTurn
