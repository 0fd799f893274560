"""Convert Anthropic tool definitions and tool-call inputs for Kiro (spec §3.10–§3.13).

Both directions live here: outbound (client tool -> Kiro tool spec, history tool_use input
-> Kiro input) and inbound (`restore_tool_call`, for the response translator), so the two
halves of the Claude-Code mapping cannot drift apart.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

ToolMode = Literal["claude-code", "raw"]

#: spec 3.12: Kiro refuses tool names longer than this many UTF-8 bytes.
MAX_TOOL_NAME_BYTES = 63
_SHORT_PREFIX_CHARS = 54
#: spec 3.11: descriptions are cut to this many characters (code points).
MAX_TOOL_DESCRIPTION_CHARS = 10_000

# spec 3.19
PLACEHOLDER_TOOL_DESCRIPTION = "Tool used in conversation history"
PLACEHOLDER_TOOL_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {},
    "required": [],
    "additionalProperties": True,
}
PERMISSIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {},
    "required": [],
    "additionalProperties": True,
}

# spec 3.11: chunking advice appended to Write/Edit (both) and Bash (Z). Our own wording of
# the behaviour the spec describes; the model only needs the gist.
WRITE_SUFFIX = (
    "- IMPORTANT: When the content is longer than 150 lines, write only the first 50 lines "
    "with this tool, then append the rest with the Edit tool in chunks of at most 50 lines, "
    "using a unique placeholder line as the anchor for the next chunk. Never try to write "
    "everything in one call."
)
EDIT_SUFFIX = (
    "- IMPORTANT: When `new_string` is longer than 50 lines, split the change into several "
    "Edit calls of at most 50 lines each. When appending, keep a unique placeholder line as "
    "the anchor and remove it in the final chunk."
)
BASH_SUFFIX = (
    "- IMPORTANT: Keep commands short. If a command, inline script or heredoc would exceed "
    "100 lines or about 8000 characters, write a script file first (in chunks, with Write "
    "and Edit) and run that file instead. Do not retry an oversized command; split it."
)
_RAW_SUFFIXES = {"Write": WRITE_SUFFIX, "Edit": EDIT_SUFFIX, "Bash": BASH_SUFFIX}

# spec 3.13: Claude Code tool -> Kiro built-in tool.
CLAUDE_CODE_TOOLS: dict[str, str] = {
    "Write": "fs_write",
    "Edit": "str_replace",
    "Bash": "execute_bash",
    "Read": "read_file",
    "Glob": "file_search",
    "Grep": "grep_search",
    "LS": "list_directory",
    "WebSearch": "web_search",
}
_KIRO_TO_CLAUDE_CODE = {kiro: client for client, kiro in CLAUDE_CODE_TOOLS.items()}
#: spec 3.11 (Z): hidden in Claude-Code mode.
HIDDEN_CLAUDE_CODE_TOOLS = frozenset({"fs_append"})

# spec 3.13: (client key, Kiro key) renames per Kiro tool. Outbound, keys the Kiro schema
# lacks are dropped; inbound, keys without a rename pass through unchanged.
_KEY_RENAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "fs_write": (("file_path", "path"), ("content", "text")),
    "str_replace": (("file_path", "path"), ("old_string", "oldStr"), ("new_string", "newStr")),
    "execute_bash": (),
    "read_file": (("file_path", "path"),),
    "file_search": (
        ("pattern", "query"),
        ("exclude", "excludePattern"),
        ("include_ignored", "includeIgnoredFiles"),
    ),
    "grep_search": (
        ("pattern", "query"),
        ("glob", "includePattern"),
        ("exclude", "excludePattern"),
        ("case_sensitive", "caseSensitive"),
    ),
    "list_directory": (),
    "web_search": (),
}
_EXPLAINED = {"read_file": "Read", "file_search": "Glob", "list_directory": "LS"}


def _string(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _optional(kind: str, description: str) -> dict[str, Any]:
    return {"type": kind, "description": description}


# spec 3.13: "Kiro's own description and a hard-coded schema". Ours, in Kiro's key names.
_BUILTIN_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "fs_write": (
        "Create or overwrite a file with the given text.\n" + WRITE_SUFFIX,
        {
            "type": "object",
            "properties": {
                "path": _string("Absolute path of the file to write."),
                "text": _string("Full content to write into the file."),
            },
            "required": ["path", "text"],
            "additionalProperties": False,
        },
    ),
    "str_replace": (
        "Replace one exact occurrence of a string in a file.\n" + EDIT_SUFFIX,
        {
            "type": "object",
            "properties": {
                "path": _string("Absolute path of the file to edit."),
                "oldStr": _string("Exact text to replace; must occur once in the file."),
                "newStr": _string("Text to put in its place."),
            },
            "required": ["path", "oldStr", "newStr"],
            "additionalProperties": False,
        },
    ),
    "execute_bash": (
        "Run a bash command and return its output.\n" + BASH_SUFFIX,
        {
            "type": "object",
            "properties": {
                "command": _string("The bash command to run."),
                "timeout": _optional("number", "Optional timeout in milliseconds."),
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    ),
    "read_file": (
        "Read a file, optionally only a range of its lines.",
        {
            "type": "object",
            "properties": {
                "path": _string("Path of the file to read."),
                "start_line": _optional("number", "First line to read (1-based)."),
                "end_line": _optional("number", "Last line to read (inclusive)."),
                "explanation": _string("Why the file is being read."),
            },
            "required": ["path", "explanation"],
            "additionalProperties": False,
        },
    ),
    "file_search": (
        "Find files whose path matches a glob pattern.",
        {
            "type": "object",
            "properties": {
                "query": _string("Glob pattern to match file paths against."),
                "excludePattern": _optional("string", "Glob pattern of files to skip."),
                "includeIgnoredFiles": _optional(
                    "string", "Whether to include ignored files: yes or no."
                ),
                "explanation": _string("Why the search is being run."),
            },
            "required": ["query", "explanation"],
            "additionalProperties": False,
        },
    ),
    "grep_search": (
        "Search file contents with a regular expression.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "Regex to find."},
                "includePattern": _optional("string", "Glob pattern of files to search."),
                "excludePattern": _optional("string", "Glob pattern of files to skip."),
                "caseSensitive": _optional("boolean", "Match case exactly."),
                "explanation": _optional("string", "Why the search is being run."),
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
    "list_directory": (
        "List the entries of a directory.",
        {
            "type": "object",
            "properties": {
                "path": _string("Path of the directory."),
                "depth": _optional("number", "How many levels to recurse."),
                "explanation": _string("Why the directory is being listed."),
            },
            "required": ["path", "explanation"],
            "additionalProperties": False,
        },
    ),
    "web_search": (
        "Search the web for current information.",
        {
            "type": "object",
            "properties": {"query": _string("The search query.")},
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
}

# spec 3.17/11.5: the native web_search tool travels as a normal tool in the mixed loop.
# Z gives it a permissive empty schema; naming `query` makes the model fill the field the
# loop reads first.
NATIVE_WEB_SEARCH_SPEC: tuple[str, dict[str, Any]] = (
    "Search the web and return the most relevant results for a query.",
    {
        "type": "object",
        "properties": {"query": _string("The search query.")},
        "required": ["query"],
        "additionalProperties": True,
    },
)


class ToolSpecification(TypedDict):
    name: str
    description: str
    inputSchema: dict[str, Any]


class KiroTool(TypedDict):
    toolSpecification: ToolSpecification


@dataclass(frozen=True, slots=True)
class ConvertedTool:
    """One tool spec for Kiro plus what happened to it on the way."""

    spec: KiroTool
    client_name: str
    shortened: bool = False
    truncated: bool = False
    schema_repaired: bool = False
    claude_code: bool = False


def shorten_tool_name(name: str) -> str:
    """Return `name`, or a deterministic ≤63-byte stand-in for a longer one (spec 3.12)."""
    if len(name.encode()) <= MAX_TOOL_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    prefix = name[:_SHORT_PREFIX_CHARS]
    # spec 3.12 cuts 54 characters; with multi-byte characters that can still be over 63
    # bytes, which Kiro would refuse. Trim further by characters until it fits.
    while len(f"{prefix}_{digest}".encode()) > MAX_TOOL_NAME_BYTES:
        prefix = prefix[:-1]
    return f"{prefix}_{digest}"


def is_native_web_search(tool: Mapping[str, Any]) -> bool:
    """Tell whether a tool is Anthropic's server-side web search (spec 3.17, Z's rule)."""
    kind = tool.get("type")
    return (
        tool.get("name") == "web_search"
        and isinstance(kind, str)
        and kind.startswith("web_search_")
    )


def kiro_tool_name(name: str, mode: ToolMode) -> str:
    """Return the name a client tool (or history tool_use) gets upstream."""
    if mode == "claude-code" and name in CLAUDE_CODE_TOOLS:
        return CLAUDE_CODE_TOOLS[name]
    return shorten_tool_name(name)


def convert_tool(tool: Mapping[str, Any], *, mode: ToolMode) -> ConvertedTool:
    """Convert one validated client tool (it has a string `name`) into a Kiro tool spec."""
    name: str = tool["name"]
    if mode == "claude-code" and name in CLAUDE_CODE_TOOLS:
        kiro_name = CLAUDE_CODE_TOOLS[name]
        description, schema = _BUILTIN_SPECS[kiro_name]
        return ConvertedTool(
            spec=_spec(kiro_name, description, copy.deepcopy(schema)),
            client_name=name,
            claude_code=True,
        )
    if is_native_web_search(tool):
        description, schema = NATIVE_WEB_SEARCH_SPEC
        return ConvertedTool(spec=_spec(name, description, copy.deepcopy(schema)), client_name=name)

    raw_description = tool.get("description")
    description = raw_description if isinstance(raw_description, str) else ""
    suffix = _RAW_SUFFIXES.get(name)
    if suffix is not None:
        description = f"{description}\n{suffix}"
    if not description.strip():
        description = name  # spec 3.11 (Z): Kiro refuses blank descriptions
    truncated = len(description) > MAX_TOOL_DESCRIPTION_CHARS
    if truncated:
        description = description[:MAX_TOOL_DESCRIPTION_CHARS]
    original_schema = tool.get("input_schema")
    schema = normalize_schema(original_schema)
    short = shorten_tool_name(name)
    return ConvertedTool(
        spec=_spec(short, description, schema),
        client_name=name,
        shortened=short != name,
        truncated=truncated,
        schema_repaired=original_schema is not None and schema != original_schema,
    )


def placeholder_tool(name: str) -> KiroTool:
    """Declare a tool that only history uses, so Kiro accepts the history (spec 3.10)."""
    return _spec(name, PLACEHOLDER_TOOL_DESCRIPTION, copy.deepcopy(PLACEHOLDER_TOOL_SCHEMA))


def normalize_schema(schema: object) -> dict[str, Any]:
    """Turn any client `input_schema` into one Kiro accepts (spec 3.11, H rules plus Z's)."""
    if not isinstance(schema, Mapping):
        return copy.deepcopy(PERMISSIVE_SCHEMA)
    result: dict[str, Any] = {
        key: copy.deepcopy(value) for key, value in schema.items() if key != "$schema"
    }
    had_properties = isinstance(result.get("properties"), Mapping)
    for combinator in ("oneOf", "anyOf", "allOf"):
        variants = result.pop(combinator, None)
        if had_properties or "properties" in result or not isinstance(variants, list):
            continue
        # spec 3.11 (Z): recover the fields of the first object variant.
        for variant in variants:
            if isinstance(variant, Mapping) and variant.get("type") == "object":
                for key in ("properties", "required", "additionalProperties", "description"):
                    if key in variant and key not in result:
                        result[key] = copy.deepcopy(variant[key])
                break
    result["type"] = "object"
    properties = result.get("properties")
    result["properties"] = (
        {key: _normalize_subschema(value) for key, value in properties.items()}
        if isinstance(properties, Mapping)
        else {}
    )
    required = result.get("required")
    result["required"] = (
        [item for item in required if isinstance(item, str)] if isinstance(required, list) else []
    )
    if not isinstance(result.get("additionalProperties"), bool | Mapping):
        result["additionalProperties"] = True
    return result


def _normalize_subschema(schema: Any) -> Any:
    """Drop the Draft 2019+ constructs Kiro's Draft-07 validator refuses (spec 3.11, Z)."""
    if not isinstance(schema, Mapping):
        return schema
    result = {key: value for key, value in schema.items() if key != "$schema"}
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if _is_number(result.get(key)):
            del result[key]
    for key in ("minimum", "maximum"):
        value = result.get(key)
        if _is_number(value) and not -(2**31) <= value <= 2**31 - 1:
            del result[key]
    if isinstance(result.get("properties"), Mapping):
        result["properties"] = {
            key: _normalize_subschema(value) for key, value in result["properties"].items()
        }
    if "items" in result:
        result["items"] = _normalize_subschema(result["items"])
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spec(name: str, description: str, schema: dict[str, Any]) -> KiroTool:
    return {
        "toolSpecification": {
            "name": name,
            "description": description,
            "inputSchema": {"json": schema},
        }
    }


def to_kiro_input(client_name: str, tool_input: Any, *, mode: ToolMode) -> Any:
    """Rewrite a history tool_use input into the Kiro tool's key names (spec 3.13)."""
    kiro_name = CLAUDE_CODE_TOOLS.get(client_name) if mode == "claude-code" else None
    if kiro_name is None or not isinstance(tool_input, Mapping):
        return tool_input
    out = _rename(tool_input, _KEY_RENAMES[kiro_name], forward=True)
    if kiro_name == "read_file":
        offset, limit = out.pop("offset", None), out.pop("limit", None)
        if _is_int(offset):
            out["start_line"] = offset
        if _is_int(limit):
            out["end_line"] = offset + limit - 1 if _is_int(offset) else limit
    if kiro_name == "file_search" and isinstance(out.get("includeIgnoredFiles"), bool):
        out["includeIgnoredFiles"] = "yes" if out["includeIgnoredFiles"] else "no"
    if kiro_name in _EXPLAINED and not out.get("explanation"):
        out["explanation"] = f"Mapped from Claude Code {_EXPLAINED[kiro_name]} tool."
    # Keep only what the Kiro schema declares (it forbids additional properties), as Z
    # does; unlike Z, an unmappable key such as Read's `pages` is dropped, not a 400.
    declared = _BUILTIN_SPECS[kiro_name][1]["properties"]
    return {key: value for key, value in out.items() if key in declared}


def restore_tool_call(
    kiro_name: str, tool_input: Any, tool_name_map: Mapping[str, str]
) -> tuple[str, Any]:
    """Map an upstream tool call back to the client's tool name and input keys (spec 3.12/3.13).

    Matching on the Kiro name means a client tool that merely happens to be called `Read`
    in raw mode is never rewritten.
    """
    client_name = tool_name_map.get(kiro_name, kiro_name)
    if _KIRO_TO_CLAUDE_CODE.get(kiro_name) != client_name or not isinstance(tool_input, Mapping):
        return client_name, tool_input
    out = _rename(tool_input, _KEY_RENAMES[kiro_name], forward=False)
    if kiro_name == "read_file":
        start, end = out.pop("start_line", None), out.pop("end_line", None)
        if _is_int(start):
            out["offset"] = start
        if _is_int(end):
            limit = end - start + 1 if _is_int(start) else end
            if limit > 0:
                out["limit"] = limit
    if kiro_name == "file_search" and out.get("include_ignored") in ("yes", "no"):
        out["include_ignored"] = out["include_ignored"] == "yes"
    if kiro_name in ("read_file", "file_search", "list_directory", "grep_search"):
        # Claude Code's own schemas have no `explanation`; it would fail their validation.
        out.pop("explanation", None)
    return client_name, out


def _rename(
    source: Mapping[str, Any], renames: tuple[tuple[str, str], ...], *, forward: bool
) -> dict[str, Any]:
    """Rename keys one way or the other, keeping unknown keys and dropping nulls."""
    mapping = dict(renames) if forward else {kiro: client for client, kiro in renames}
    out: dict[str, Any] = {}
    for key, value in source.items():
        if value is None:
            continue
        target = mapping.get(key, key)
        if target in out and key not in mapping:
            continue  # an explicit already-renamed value wins over a stray duplicate
        out[target] = value
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
