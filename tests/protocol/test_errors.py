"""The error taxonomy (gateway/protocol/errors.py): documented types only, built in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway.protocol import errors
from gateway.protocol.errors import (
    ERROR_TYPE_MEANINGS,
    OPENAI_TYPES,
    AnthropicType,
    ClientError,
    ErrorType,
    UpstreamFailure,
)

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    path
    for package in ("gateway", "credentials", "usage", "kiro_site")
    for path in sorted((ROOT / package).rglob("*.py"))
    if "migrations" not in path.parts and "fakekiro" not in path.parts
]
BUILDERS = [
    lambda: errors.invalid_request("m"),
    lambda: errors.authentication("m"),
    lambda: errors.permission("m"),
    lambda: errors.not_found("m"),
    lambda: errors.method_not_allowed("m"),
    lambda: errors.too_large("m"),
    lambda: errors.rate_limited("m", 3),
    lambda: errors.api_error("m"),
    lambda: errors.timeout("m"),
    lambda: errors.overloaded("m"),
    errors.internal_error,
]


def test_a_client_error_refuses_a_type_anthropic_does_not_document():
    with pytest.raises(ValueError):
        ClientError(502, "upstream_tool_json_error", "cut")
    with pytest.raises(ValueError):
        ClientError(400, "invalid_request_error", "bad", kind="bad_request_error")
    with pytest.raises(ValueError):
        UpstreamFailure("upstream_error", "broke")


@pytest.mark.parametrize("build", BUILDERS)
def test_every_builder_gives_a_documented_type_and_a_record_type(build):
    error = build()

    assert error.error_type in set(AnthropicType)
    assert error.kind in set(ErrorType)
    assert error.body() == {
        "type": "error",
        "error": {"type": error.error_type, "message": error.message},
    }


@pytest.mark.parametrize("kind", list(AnthropicType))
def test_every_anthropic_type_has_an_openai_type_and_code(kind):
    openai_type, _ = errors.openai_error_fields(kind, 400)

    assert openai_type in OPENAI_TYPES


def test_a_status_without_a_type_maps_as_anthropic_maps_it():
    assert errors.openai_error_fields(None, 401) == ("invalid_request_error", "invalid_api_key")
    assert errors.openai_error_fields("nonsense", 503) == ("server_error", None)
    assert errors.type_for_status(529) == AnthropicType.OVERLOADED


def test_every_record_type_has_a_meaning_and_a_line_in_the_readme():
    readme = (ROOT / "README.md").read_text()

    assert set(ERROR_TYPE_MEANINGS) == set(ErrorType)
    missing = [kind.value for kind in ErrorType if f"`{kind.value}`" not in readme]
    assert missing == []


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    ]


def test_client_errors_are_built_only_in_the_errors_module():
    builders = {
        str(path.relative_to(ROOT)): len(_calls(ast.parse(path.read_text()), "ClientError"))
        for path in SOURCES
    }

    assert {path for path, count in builders.items() if count} == {"gateway/protocol/errors.py"}


def _literal_error_types(tree: ast.AST) -> list[tuple[int, str]]:
    """Find string literals given as a record's error type: `x.error_type = "…"`,
    `error_type="…"` keywords, and the third argument of `fail`/`abort`/`_fail`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for element, value in zip(elements, values, strict=False):
                    if (
                        isinstance(element, ast.Attribute)
                        and element.attr == "error_type"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        found.append((node.lineno, value.value))
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if (
                    keyword.arg == "error_type"
                    and isinstance(keyword.value, ast.Constant)
                    and isinstance(keyword.value.value, str)
                ):
                    found.append((node.lineno, keyword.value.value))
    return found


def test_every_literal_record_type_in_the_code_is_one_of_the_enum():
    recorded = {kind.value for kind in ErrorType}
    unknown = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in SOURCES
        for line, value in _literal_error_types(ast.parse(path.read_text()))
        if value and value not in recorded
    ]

    assert unknown == []


def test_every_literal_client_type_in_the_code_is_documented():
    """`UpstreamFailure("…", …)` and the first argument of a stream's `fail`/`abort`."""
    documented = {kind.value for kind in AnthropicType}
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        calls = [
            call
            for name in ("UpstreamFailure", "fail", "abort", "_Failure", "_error_event")
            for call in _calls(tree, name)
            if name not in ("fail", "abort") or len(call.args) == 3  # a stream's (kind, …)
        ]
        for call in calls:
            first = call.args[0] if call.args else None
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value not in documented
            ):
                bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {first.value!r}")

    assert bad == []
