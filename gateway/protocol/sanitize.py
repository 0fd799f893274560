"""Z's text sanitizers (spec kiro-protocol §6.7): `<tool_use>` stripping, `<invoke>`
reclamation, repeat guard.

`Sanitizer` is what `translate_machine.Machine` runs streamed text through. Unlike Z we hold
back a partial line only when it can still become one of those (a line start that is `<…`, a
prefix of `call`/`count`/`card`, or a fence), not every tail after a `<`, so text such as
`if a < b` streams without delay.
"""

from __future__ import annotations

import re
from typing import Any, Final

_STRAY_TOKENS: Final = frozenset({"call", "count", "card"})
_STRAY_PREFIXES: Final = frozenset(
    token[:n] for token in _STRAY_TOKENS for n in range(len(token) + 1)
)
REPEAT_GUARD_LIMIT: Final = 32  # spec 6.7: the 32nd identical stray line trips the guard
INVOKE_HOLD_LIMIT: Final = 262_144  # spec 6.7
_TOOL_USE_OPEN: Final = "<tool_use"
_TOOL_USE_CLOSE: Final = "</tool_use>"
_INVOKE_OPEN = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*:)?invoke(?=[\s>/])")
# A line start that may still grow into an invoke open tag.
_INVOKE_PREFIX = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*:?)?(?:i(?:n(?:v(?:o(?:k(?:e)?)?)?)?)?)?")
_INVOKE_CLOSE = re.compile(r"</(?:[A-Za-z_][A-Za-z0-9_]*:)?invoke>")
# A line start that needs a closer look: maybe call/count/card, a fence or a tag.
_NOTABLE_LINE = re.compile(r"\n[^\S\n]*[c`<]")
_NOTABLE_HEAD = re.compile(r"[^\S\n]*[c`<]")
_NAME_ATTR = re.compile(r'name="([^"]*)"')
_PARAM_OPEN = re.compile(r'<(?:[A-Za-z_][A-Za-z0-9_]*:)?parameter name="([^"]*)"[^>]*>')
_PARAM_CLOSE = re.compile(r"</(?:[A-Za-z_][A-Za-z0-9_]*:)?parameter>")

Segment = str | tuple[str, dict[str, Any]]


def _partial_suffix(text: str, tag: str) -> int:
    """Return the length of the longest tail of text that is a proper prefix of tag."""
    start = text.rfind("<", max(0, len(text) - len(tag) + 1))
    if start >= 0 and tag.startswith(text[start:]):
        return len(text) - start
    return 0


def parse_invoke(block: str) -> tuple[str, dict[str, Any]] | None:
    """Parse `<invoke name="X"><parameter name="k">v</parameter>…</invoke>` (spec 6.7)."""
    open_end = block.find(">")
    if open_end < 0:
        return None
    name = _NAME_ATTR.search(block, 0, open_end)
    if name is None or not name.group(1):
        return None
    closes = list(_INVOKE_CLOSE.finditer(block))
    body = block[open_end + 1 : closes[-1].start() if closes else len(block)]
    params: dict[str, Any] = {}
    opens = list(_PARAM_OPEN.finditer(body))
    for i, match in enumerate(opens):
        end = opens[i + 1].start() if i + 1 < len(opens) else len(body)
        # a value runs to the *last* close before the next parameter: values may contain
        # a literal </parameter> (patches)
        value_closes = list(_PARAM_CLOSE.finditer(body, match.end(), end))
        if not value_closes:
            break
        params[match.group(1)] = body[match.end() : value_closes[-1].start()]
    return name.group(1), params


class Sanitizer:
    """Strip leaked tool markup from streamed text and reclaim `<invoke>` calls (spec 6.7).

    Stage A removes `<tool_use …>…</tool_use>` anywhere. Stage B works on lines: a line-start
    `<invoke>` block naming a declared tool becomes a tool call (and the stray `call`/`count`/
    `card` lines right before it vanish); a stray line repeated 32 times drops all further text.
    `quiet` is True when the next fragment may pass untouched if it has no `<` and no newline.
    """

    __slots__ = (
        "_a_buf",
        "_a_in",
        "_fence",
        "_line_start",
        "_partial",
        "_run",
        "_run_token",
        "_scan_from",
        "_skip_newline",
        "_strays",
        "_tools",
        "_tripped",
        "quiet",
    )

    def __init__(self, tools: frozenset[str]) -> None:
        self._tools = tools  # names an <invoke> may call; empty: reclamation off
        self._a_buf = ""
        self._a_in = False
        self._partial = ""
        self._strays: list[str] = []
        self._line_start = True
        self._fence = False
        self._run = 0
        self._run_token = ""
        self._scan_from = -1  # >= 0 while an <invoke> block is held: where to look for its end
        self._tripped = False
        self._skip_newline = False  # the newline ending a reclaimed <invoke> block
        self.quiet = False

    def push(self, text: str, *, final: bool) -> list[Segment]:
        """Consume a fragment (or flush with final=True); return text and tool segments."""
        segments: list[Segment] = []
        if self._tripped:
            return segments
        text = self._strip_tool_use(text, final)
        if text or final:
            self._lines(text, final, segments)
        if final:
            self._line_start = True  # a tool block or the end follows: next text starts anew
        self.quiet = not (
            self._line_start
            or self._partial
            or self._strays
            or self._a_buf
            or self._a_in
            or self._tripped
            or self._skip_newline
        )
        return segments

    def _strip_tool_use(self, text: str, final: bool) -> str:
        if not self._a_buf and not self._a_in and "<" not in text:
            return text
        s = self._a_buf + text
        self._a_buf = ""
        out: list[str] = []
        i = 0
        while True:
            if self._a_in:
                j = s.find(_TOOL_USE_CLOSE, i)
                if j < 0:
                    if final:
                        self._a_in = False  # spec 6.7: an unclosed block is dropped
                    else:  # keep a close tag that may straddle the next fragment
                        keep = _partial_suffix(s[i:], _TOOL_USE_CLOSE)
                        self._a_buf = s[len(s) - keep :] if keep else ""
                    break
                i = j + len(_TOOL_USE_CLOSE)
                self._a_in = False
                continue
            j = s.find(_TOOL_USE_OPEN, i)
            if j < 0:
                tail = s[i:]
                keep = 0 if final else _partial_suffix(tail, _TOOL_USE_OPEN)
                out.append(tail[: len(tail) - keep])
                self._a_buf = tail[len(tail) - keep :] if keep else ""
                break
            after = j + len(_TOOL_USE_OPEN)
            if after >= len(s):
                out.append(s[i:j])
                if final:
                    out.append(s[j:])
                else:
                    self._a_buf = s[j:]
                break
            if s[after] == ">" or s[after].isspace():
                out.append(s[i:j])
                self._a_in = True
            else:  # `<tool_user>` and friends stay text
                out.append(s[i:after])
            i = after
        return "".join(out)

    def _release_strays(self, segments: list[Segment]) -> None:
        if self._strays:
            segments.append("".join(self._strays))
            self._strays.clear()

    def _lines(self, text: str, final: bool, segments: list[Segment]) -> None:
        s = self._partial + text
        self._partial = ""
        if self._skip_newline and s:
            self._skip_newline = False
            if s[0] == "\n":
                s = s[1:]
        n = len(s)
        i = 0
        while i < n:
            if not self._line_start:
                j = s.find("\n", i)
                if j < 0:
                    segments.append(s[i:])
                    return
                segments.append(s[i : j + 1])
                i = j + 1
                self._line_start = True
                continue
            if self._scan_from >= 0:  # a held <invoke> block starts here
                i = self._invoke_block(s, i, final, segments)
                if i < 0:
                    return
                continue
            # Pass whole lines that cannot be stray tokens, fences or invokes in one go.
            if _NOTABLE_HEAD.match(s, i):
                bulk_end = i
            else:
                found = _NOTABLE_LINE.search(s, i)
                bulk_end = found.start() + 1 if found else s.rfind("\n", i) + 1
            if bulk_end > i:
                self._release_strays(segments)
                chunk = s[i:bulk_end]
                segments.append(chunk)
                if not chunk.isspace():
                    self._run = 0
                i = bulk_end
                continue
            j = s.find("\n", i)
            line = s[i:j] if j >= 0 else s[i:]
            token = line.strip()
            if j >= 0:
                if token in _STRAY_TOKENS:
                    if token == self._run_token:
                        self._run += 1
                    else:
                        self._run_token, self._run = token, 1
                    if self._run >= REPEAT_GUARD_LIMIT:
                        # spec 6.7: a degenerate repeat loop; drop all further text
                        self._strays.clear()
                        self._tripped = True
                        return
                    self._strays.append(s[i : j + 1])
                    i = j + 1
                    continue
                if not token:  # blank lines neither break nor extend a run
                    self._release_strays(segments)
                    segments.append(s[i : j + 1])
                    i = j + 1
                    continue
            elif not final and self._undecided(line):
                self._partial = s[i:]
                return
            self._run = 0
            if line.lstrip().startswith("```"):
                self._fence = not self._fence
            elif self._tools and s[i] == "<" and not self._fence and _INVOKE_OPEN.match(s, i):
                self._scan_from = 0
                i = self._invoke_block(s, i, final, segments)
                if i < 0:
                    return
                continue
            self._release_strays(segments)
            self._line_start = False
        if final:
            self._release_strays(segments)

    def _undecided(self, line: str) -> bool:
        """Tell whether an unfinished line may still be a stray token, a fence or an invoke."""
        stripped = line.lstrip()
        if stripped in _STRAY_PREFIXES or stripped.rstrip() in _STRAY_TOKENS:
            return True
        if stripped in ("`", "``"):
            return True
        return bool(
            self._tools
            and line[:1] == "<"
            and not self._fence
            and _INVOKE_PREFIX.fullmatch(line)
            and not _INVOKE_OPEN.match(line)
        )

    def _invoke_block(self, s: str, i: int, final: bool, segments: list[Segment]) -> int:
        """Settle the `<invoke>` block at s[i]; return where to go on, or -1 to wait."""
        close = _INVOKE_CLOSE.search(s, i + self._scan_from)
        if close is None:
            if not final and len(s) - i <= INVOKE_HOLD_LIMIT:
                self._partial = s[i:]
                self._scan_from = max(0, len(s) - i - 16)  # next time, scan only the new tail
                return -1
            # spec 6.7: unclosed past the hold limit, or at the end: it stays text
            self._scan_from = -1
            self._release_strays(segments)
            segments.append(s[i:])
            self._line_start = False
            return len(s)
        self._scan_from = -1
        end = close.end()
        parsed = parse_invoke(s[i:end])
        if parsed is not None and parsed[0] in self._tools:
            self._strays.clear()  # spec 6.7: stray call/count/card lines before it vanish
            segments.append(parsed)
            if end < len(s):
                end += s[end] == "\n"
            else:
                self._skip_newline = True
            self._line_start = True
        else:
            self._release_strays(segments)
            segments.append(s[i:end])
            self._line_start = False
        return end
