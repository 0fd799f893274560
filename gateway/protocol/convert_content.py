"""Turn the content of Anthropic messages into Kiro turns (spec §2.7, §3.8, §3.14).

Text, images (checked, deduplicated and resized), documents, search results, tool_use and
tool_result blocks, and server-tool blocks written into the transcript as text. Every
repair is reported as a `Rule` on the `ConversionState`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from gateway.protocol.convert_turns import (
    TOOL_ONLY_CONTENT,
    AssistantTurn,
    ConversionState,
    Rule,
    UserTurn,
)
from gateway.protocol.images import PreparedImage, format_for_media_type, prepare_image
from gateway.protocol.models import ConversionError
from gateway.protocol.tools import CLAUDE_CODE_TOOLS, kiro_tool_name, to_kiro_input

__all__ = ["parse_assistant", "parse_user"]

# spec 3.8 / 3.14: exact strings.
IMAGE_ONLY_TOOL_RESULT = "[image attached]"
REPEATED_IMAGE = "[image omitted: identical to an earlier screenshot]"
# Ours (no proxy has it): PDFs, which Kiro has no channel for, leave a visible trace for the
# model.
PDF_OMITTED = "[document omitted: PDF documents are not supported by this gateway]"

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


def parse_user(
    content: str | list[Any], path: str, state: ConversionState, *, history: bool
) -> UserTurn:
    """Extract texts, images and tool results of one user message (spec 3.8)."""
    turn = UserTurn()
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


def parse_assistant(content: str | list[Any], path: str, state: ConversionState) -> AssistantTurn:
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
    return AssistantTurn(body, tool_uses)


def _tool_use(block: Mapping[str, Any], path: str, state: ConversionState) -> dict[str, Any]:
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
    block: Mapping[str, Any], path: str, turn: UserTurn, state: ConversionState, *, history: bool
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
    items: list[Any], path: str, turn: UserTurn, state: ConversionState, *, history: bool
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
            sink = UserTurn()
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
    state: ConversionState,
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
    block: Mapping[str, Any], path: str, turn: UserTurn, state: ConversionState, *, history: bool
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
        sink = parse_user(inner, f"{path}.source.content", state, history=history)
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
