"""Check a generateAssistantResponse body the way the upstream would (spec kiro-protocol §2, §7.4).

Pure functions, no I/O. `check_generate_request` returns `Problem`s, each carrying the exact
400 body the fake answers with (first problem wins); `validate_generate_request` returns just
the texts, for protocol tests that assert a converted body is accepted.

Rules and where they come from:

* shape and required members: §2.1-§2.9 (conversationState, chatTriggerType, conversationId,
  currentMessage.userInputMessage with content/modelId/origin); unknown members are flagged
  because the proxies never send any (§2.1 "No max_tokens ... is ever sent");
* `chatTriggerType` in the AWS-model enum (§2.2: "AUTO" causes 400s);
* history strictly alternates user/assistant starting with a user entry and ends with an
  assistant entry, the current message being the next user turn (§2.5, §3.7);
* every toolResult answers a toolUse of the immediately preceding assistant message and every
  toolUse is answered by the next user message (§3.9, §7.4 client validation);
* history toolUses name declared tools (§3.10: Kiro rejects undeclared ones);
* tool specs: name 1..64 of [A-Za-z0-9_-], description non-blank and <= 10,000 characters,
  `inputSchema.json` an object without top-level oneOf/allOf/anyOf (§2.6, §3.11, §7.4);
* endpoint variants: ide origin `AI_EDITOR`; cli origin `KIRO_CLI`, no profileArn, no
  agentContinuationId, no history modelId, envState present (§1.3, §2.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.fakekiro import bodies

Endpoint = str  # "ide" | "cli"

TOP_LEVEL_KEYS = {"conversationState", "profileArn", "additionalModelRequestFields"}
STATE_KEYS = {
    "agentContinuationId",
    "agentTaskType",
    "chatTriggerType",
    "currentMessage",
    "conversationId",
    "history",
    "customizationArn",
    "workspaceId",
}
CHAT_TRIGGER_TYPES = {"MANUAL", "DIAGNOSTIC", "INLINE_CHAT"}
USER_KEYS = {"userInputMessageContext", "content", "modelId", "images", "origin", "userIntent"}
CONTEXT_KEYS = {
    "tools",
    "toolResults",
    "envState",
    "editorState",
    "shellState",
    "gitState",
    "diagnostic",
    "consoleState",
    "userSettings",
    "additionalContext",
}
ASSISTANT_KEYS = {
    "content",
    "toolUses",
    "messageId",
    "references",
    "followupPrompt",
    "supplementaryWebLinks",
}
IMAGE_FORMATS = {"jpeg", "png", "gif", "webp"}
TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DESCRIPTION_CHARS = 10_000
ORIGINS = {"ide": "AI_EDITOR", "cli": "KIRO_CLI"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the upstream would reject the request, with the body it would answer."""

    text: str
    body: bytes = bodies.IMPROPERLY_FORMED
    status: int = 400


def validate_generate_request(body: Any, *, endpoint: str = "ide") -> list[str]:
    """Return the problems the upstream would reject `body` for; empty when it is valid."""
    return [p.text for p in check_generate_request(body, endpoint=endpoint)]


def check_generate_request(body: Any, *, endpoint: str = "ide") -> list[Problem]:
    """Return typed problems (with their §7.4 answer bodies) for a request body."""
    if endpoint not in ORIGINS:
        raise ValueError(f"endpoint must be 'ide' or 'cli', not {endpoint!r}")
    v = _Validator(endpoint)
    v.check(body)
    # Structural problems first, then pairing, so the answer body reflects the worst one.
    return sorted(v.problems, key=lambda p: p.body is not bodies.IMPROPERLY_FORMED)


class _Validator:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.problems: list[Problem] = []

    def add(self, text: str, body: bytes = bodies.IMPROPERLY_FORMED) -> None:
        self.problems.append(Problem(text, body))

    def check(self, body: Any) -> None:
        if not isinstance(body, dict):
            self.add("body must be a JSON object")
            return
        for key in sorted(set(body) - TOP_LEVEL_KEYS):
            self.add(f"unknown top-level member {key!r}")
        arn = body.get("profileArn")
        if arn is not None:
            if self.endpoint == "cli":
                self.add("cli: profileArn must not be sent (§1.3)")
            elif not isinstance(arn, str) or not arn.startswith("arn:aws:codewhisperer:"):
                self.add("profileArn must be an arn:aws:codewhisperer:... string")
        extra = body.get("additionalModelRequestFields")
        if extra is not None and not isinstance(extra, dict):
            self.add("additionalModelRequestFields must be an object")
        state = body.get("conversationState")
        if not isinstance(state, dict):
            self.add("conversationState is required and must be an object")
            return
        self.check_state(state)

    def check_state(self, state: dict[str, Any]) -> None:
        for key in sorted(set(state) - STATE_KEYS):
            self.add(f"conversationState: unknown member {key!r}")
        trigger = state.get("chatTriggerType")
        if trigger is None:
            self.add("conversationState.chatTriggerType is required")
        elif trigger not in CHAT_TRIGGER_TYPES:
            self.add(f"conversationState.chatTriggerType {trigger!r} is not one of MANUAL, ...")
        conversation_id = state.get("conversationId")
        if not isinstance(conversation_id, str) or not conversation_id:
            self.add("conversationState.conversationId is required and must be a string")
        task_type = state.get("agentTaskType")
        if task_type is not None and task_type != "vibe":
            self.add(f"conversationState.agentTaskType {task_type!r} is not 'vibe'")
        continuation = state.get("agentContinuationId")
        if continuation is not None:
            if self.endpoint == "cli":
                self.add("cli: conversationState.agentContinuationId must be removed (§1.3)")
            elif not isinstance(continuation, str):
                self.add("conversationState.agentContinuationId must be a string")

        current = state.get("currentMessage")
        user = current.get("userInputMessage") if isinstance(current, dict) else None
        if not isinstance(current, dict) or set(current) != {"userInputMessage"}:
            self.add("conversationState.currentMessage must be {'userInputMessage': {...}}")
        if not isinstance(user, dict):
            self.add("currentMessage.userInputMessage is required and must be an object")
            user = None

        history = state.get("history", [])
        if not isinstance(history, list):
            self.add("conversationState.history must be an array")
            history = []

        tools = self.check_current(user) if user is not None else {}
        messages: list[tuple[str, dict[str, Any]]] = []
        for i, entry in enumerate(history):
            checked = self.check_history_entry(i, entry)
            if checked is not None:
                messages.append(checked)
        self.check_alternation(messages, has_current=user is not None)
        if user is not None:
            messages.append(("user", user))
        self.check_tool_pairing(messages)
        self.check_declared_tools(messages, tools)

    # --- messages -------------------------------------------------------------------------

    def check_current(self, user: dict[str, Any]) -> dict[str, str]:
        where = "currentMessage.userInputMessage"
        self.check_user_fields(where, user, history=False)
        context = user.get("userInputMessageContext")
        if context is None:
            if self.endpoint == "cli":
                self.add(f"cli: {where}.userInputMessageContext with envState is required (§2.4)")
            return {}
        if not isinstance(context, dict):
            self.add(f"{where}.userInputMessageContext must be an object")
            return {}
        if self.endpoint == "cli" and not isinstance(context.get("envState"), dict):
            self.add(f"cli: {where}.userInputMessageContext.envState is required (§2.4)")
        return self.check_tools(f"{where}.userInputMessageContext", context.get("tools"))

    def check_user_fields(self, where: str, user: dict[str, Any], *, history: bool) -> None:
        for key in sorted(set(user) - USER_KEYS):
            self.add(f"{where}: unknown member {key!r}")
        if not isinstance(user.get("content"), str):
            self.add(f"{where}.content is required and must be a string")
        model_id = user.get("modelId")
        if history and self.endpoint == "cli":
            if model_id is not None:
                self.add(f"cli: {where}.modelId must be removed from history (§1.3)")
        elif not isinstance(model_id, str) or not model_id:
            self.add(f"{where}.modelId is required and must be a non-empty string")
        origin = user.get("origin")
        expected = ORIGINS[self.endpoint]
        if origin is None:
            self.add(f"{where}.origin is required")
        elif origin != expected:
            self.add(f"{where}.origin must be {expected!r} on the {self.endpoint} endpoint")
        images = user.get("images")
        if images is not None:
            self.check_images(where, images)
        context = user.get("userInputMessageContext")
        if context is not None:
            if not isinstance(context, dict):
                self.add(f"{where}.userInputMessageContext must be an object")
            else:
                for key in sorted(set(context) - CONTEXT_KEYS):
                    self.add(f"{where}.userInputMessageContext: unknown member {key!r}")
                if history and "tools" in context:
                    self.add(f"{where}: tools are only allowed on the current message (§2.4)")
                self.check_tool_results(where, context.get("toolResults"))

    def check_images(self, where: str, images: Any) -> None:
        if not isinstance(images, list):
            self.add(f"{where}.images must be an array")
            return
        for j, image in enumerate(images):
            ok = (
                isinstance(image, dict)
                and image.get("format") in IMAGE_FORMATS
                and isinstance(image.get("source"), dict)
                and isinstance(image["source"].get("bytes"), str)
                and image["source"]["bytes"]
            )
            if not ok:
                self.add(f"{where}.images[{j}] must be {{format, source: {{bytes}}}} (§2.9)")

    def check_tool_results(self, where: str, results: Any) -> None:
        if results is None:
            return
        if not isinstance(results, list):
            self.add(f"{where}.toolResults must be an array")
            return
        for j, result in enumerate(results):
            at = f"{where}.toolResults[{j}]"
            if not isinstance(result, dict):
                self.add(f"{at} must be an object")
                continue
            if not isinstance(result.get("toolUseId"), str) or not result["toolUseId"]:
                self.add(f"{at}.toolUseId is required")
            if result.get("status") not in ("success", "error"):
                self.add(f"{at}.status must be 'success' or 'error'")
            content = result.get("content")
            if not isinstance(content, list) or not all(
                isinstance(c, dict) and ("text" in c or "json" in c) for c in content
            ):
                self.add(f"{at}.content must be an array of {{text}} blocks (§2.7)")
            if "isError" in result and not isinstance(result["isError"], bool):
                self.add(f"{at}.isError must be a boolean")

    def check_history_entry(self, i: int, entry: Any) -> tuple[str, dict[str, Any]] | None:
        where = f"history[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            self.add(
                f"{where} must hold exactly one of userInputMessage / assistantResponseMessage"
            )
            return None
        ((kind, message),) = entry.items()
        if not isinstance(message, dict):
            self.add(f"{where}.{kind} must be an object")
            return None
        if kind == "userInputMessage":
            self.check_user_fields(f"{where}.userInputMessage", message, history=True)
            return ("user", message)
        if kind == "assistantResponseMessage":
            self.check_assistant(f"{where}.assistantResponseMessage", message)
            return ("assistant", message)
        self.add(f"{where}: unknown entry type {kind!r}")
        return None

    def check_assistant(self, where: str, message: dict[str, Any]) -> None:
        for key in sorted(set(message) - ASSISTANT_KEYS):
            self.add(f"{where}: unknown member {key!r}")
        content = message.get("content")
        if not isinstance(content, str):
            self.add(f"{where}.content is required and must be a string")
        elif not content:
            # §3.7: the proxies send " " for tool-only turns because empty content is refused.
            self.add(f"{where}.content must not be empty (send ' ' for a tool-only turn)")
        uses = message.get("toolUses")
        if uses is None:
            return
        if not isinstance(uses, list) or not uses:
            self.add(f"{where}.toolUses must be a non-empty array when present")
            return
        for j, use in enumerate(uses):
            at = f"{where}.toolUses[{j}]"
            if not isinstance(use, dict):
                self.add(f"{at} must be an object")
                continue
            if not isinstance(use.get("toolUseId"), str) or not use["toolUseId"]:
                self.add(f"{at}.toolUseId is required")
            if not isinstance(use.get("name"), str) or not use["name"]:
                self.add(f"{at}.name is required")
            if not isinstance(use.get("input"), dict):
                self.add(f"{at}.input must be a JSON object, not a string (§2.5)")

    # --- tools ----------------------------------------------------------------------------

    def check_tools(self, where: str, tools: Any) -> dict[str, str]:
        """Validate tool specs; return declared names (lower-cased -> name)."""
        declared: dict[str, str] = {}
        if tools is None:
            return declared
        if not isinstance(tools, list):
            self.add(f"{where}.tools must be an array")
            return declared
        for j, tool in enumerate(tools):
            at = f"{where}.tools[{j}]"
            spec = tool.get("toolSpecification") if isinstance(tool, dict) else None
            if not isinstance(spec, dict):
                self.add(f"{at} must be {{'toolSpecification': {{...}}}} (§2.6)")
                continue
            name = spec.get("name")
            if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
                self.add(f"{at}.toolSpecification.name {name!r} must match [A-Za-z0-9_-]{{1,64}}")
            elif name.lower() in declared:
                self.add(f"{at}.toolSpecification.name {name!r} is declared twice")
            else:
                declared[name.lower()] = name
            description = spec.get("description")
            if not isinstance(description, str) or not description.strip():
                self.add(f"{at}.toolSpecification.description must be a non-blank string")
            elif len(description) > MAX_DESCRIPTION_CHARS:
                self.add(
                    f"{at}.toolSpecification.description has {len(description)} characters "
                    f"(max {MAX_DESCRIPTION_CHARS})"
                )
            schema = spec.get("inputSchema")
            json_schema = schema.get("json") if isinstance(schema, dict) else None
            if not isinstance(json_schema, dict):
                self.add(f"{at}.toolSpecification.inputSchema.json must be a JSON object")
                continue
            combinators = sorted({"oneOf", "allOf", "anyOf"} & set(json_schema))
            if combinators:
                self.add(
                    f"{at}: input_schema does not support {'/'.join(combinators)} at the top level",
                    bodies.TOOL_SCHEMA_INVALID,
                )
            if json_schema.get("type", "object") != "object":
                self.add(
                    f"{at}: inputSchema.json.type must be 'object'", bodies.TOOL_SCHEMA_INVALID
                )
        return declared

    # --- conversation structure -----------------------------------------------------------

    def check_alternation(
        self, messages: list[tuple[str, dict[str, Any]]], *, has_current: bool
    ) -> None:
        expected = "user"
        for i, (role, _) in enumerate(messages):
            if role != expected:
                self.add(
                    f"history[{i}]: expected a {expected} entry, got {role} "
                    "(history must alternate user/assistant starting with user, §2.5)"
                )
                return
            expected = "assistant" if role == "user" else "user"
        if has_current and messages and messages[-1][0] != "assistant":
            self.add("history must end with an assistant entry before currentMessage (§2.5)")

    def check_tool_pairing(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        pending: list[str] = []
        pending_at = -1
        for i, (role, message) in enumerate(messages):
            where = "currentMessage" if i == len(messages) - 1 else f"history[{i}]"
            if role == "assistant":
                if pending:
                    self.add(
                        f"history[{pending_at}]: toolUses {pending} have no toolResult in the "
                        "next user message",
                        bodies.expected_tool_results(pending_at + 1, pending),
                    )
                uses = message.get("toolUses") or []
                pending = [u["toolUseId"] for u in uses if isinstance(u, dict) and "toolUseId" in u]
                pending_at = i
                continue
            context = message.get("userInputMessageContext")
            results = context.get("toolResults") if isinstance(context, dict) else None
            ids = [
                r["toolUseId"]
                for r in results or []
                if isinstance(r, dict) and isinstance(r.get("toolUseId"), str)
            ]
            seen: set[str] = set()
            for tid in ids:
                if tid in seen:
                    self.add(
                        f"{where}: duplicate toolResult for {tid}", bodies.TOOL_USE_RESULT_MISMATCH
                    )
                elif tid not in pending:
                    self.add(
                        f"{where}: toolResult {tid} answers no toolUse of the preceding "
                        "assistant message",
                        bodies.TOOL_USE_RESULT_MISMATCH,
                    )
                seen.add(tid)
            missing = [tid for tid in pending if tid not in seen]
            if missing:
                self.add(
                    f"{where}: missing toolResult for toolUses {missing} of the preceding "
                    "assistant message",
                    bodies.expected_tool_results(i, missing),
                )
            pending = []

    def check_declared_tools(
        self, messages: list[tuple[str, dict[str, Any]]], declared: dict[str, str]
    ) -> None:
        for i, (role, message) in enumerate(messages):
            if role != "assistant":
                continue
            for use in message.get("toolUses") or []:
                name = use.get("name") if isinstance(use, dict) else None
                if isinstance(name, str) and name.lower() not in declared:
                    self.add(
                        f"history[{i}]: toolUse names {name!r}, which is not among the current "
                        "tools (§3.10 placeholder tools)"
                    )
