"""Split `<thinking>…</thinking>` out of streamed assistant text (spec kiro-protocol §6.5).

Kiro has no thinking channel for prompt-injected thinking (§3.4): the model writes the tags into
its text. `ThinkingSplitter` turns the text stream into ops — text, open thinking, thinking
text, close thinking — and gives the same ops (up to how the text is cut into deltas) for any
cutting of the same text into events, because it holds back just enough characters to decide
every tag on its neighbours.

Rules, with where we differ from H/Z (both proxies share the rules):

* A tag occurrence is real iff the char before it and the char after it are not in the quote
  set Q (§6.5); before an end tag only quoting marks (`` ` " ' \\ < > / ``) count, so a thought
  whose last sentence ends right at the tag (`done.</thinking>`) closes (H/Z keep it open).
  H/Z decide a start tag at the very end of a buffer as real; we wait for one
  more char (or the end), so `` <thinking>` `` is quoted however the events are cut.
* The first real `<thinking>` opens thinking; the text before it is dropped if it is whitespace
  only and no text was emitted yet. H/Z drop a whitespace-only *remainder* even after text was
  sent, which depends on where the events were cut; we don't.
* One newline right after `<thinking>` is dropped.
* Mid-stream, a real `</thinking>` ends thinking when followed by `\\n\\n` (both dropped), as in
  H/Z, **or** by `\\n` and any other char (the tag and one newline dropped). H/Z never end on
  the single newline, so the whole answer lands in the thinking block and the response ends as
  `max_tokens` (§13.3 case 25); that is the model's normal output shape often enough to fix.
* At a boundary (tool call, end of stream) a real `</thinking>` followed only by whitespace
  ends thinking. At a tool call without such a tag we still close thinking (H/Z leave it open
  around the tool block), so blocks never interleave.
* Only the first thinking block is recognised; after it everything is text.
"""

from __future__ import annotations

from typing import Final

# Op kinds produced by the splitter.
TEXT: Final = 0
OPEN: Final = 1
THINKING: Final = 2
CLOSE: Final = 3

Op = tuple[int, str]

START_TAG: Final = "<thinking>"
END_TAG: Final = "</thinking>"
# spec 6.5: a tag touching one of these is quoted, not real.
QUOTES: Final = frozenset("`\"'\\#!@$%^&*()-_=+[]{};:<>,.?/")
# Before an end tag only real quoting marks count: H/Z also refuse `think.</thinking>`, but a
# thought that ends its last sentence right at the tag is the model's ordinary output.
END_QUOTES: Final = frozenset("`\"'\\<>/")

BEFORE: Final = 0
IN: Final = 1
AFTER: Final = 2

# Chars held back so a tag straddling two events is still decided on its neighbours:
# the char before the tag + the tag (+ the 2 chars after an end tag).
_HOLD_BEFORE: Final = len(START_TAG) + 1
_HOLD_IN: Final = len(END_TAG) + 3


def _cut(buf: str, hold: int) -> int:
    """Return where to cut off the held tail: `hold` chars back, never right before a `<`.

    A tag already judged quoted must keep its quoting char: cut just before it, the kept
    tail would start with a bare tag that the next event then takes for a real one.
    """
    cut = len(buf) - hold
    if cut > 0 and buf[cut] == "<":
        cut -= 1
    return cut


def find_start_tag(buf: str, final: bool) -> int | None:
    """Return the offset of the first real start tag, -1 if undecided, None if absent."""
    pos = buf.find(START_TAG)
    while pos >= 0:
        after = pos + len(START_TAG)
        if pos == 0 or buf[pos - 1] not in QUOTES:
            if after >= len(buf):
                return pos if final else -1
            if buf[after] not in QUOTES:
                return pos
        pos = buf.find(START_TAG, pos + 1)
    return None


def find_end_tag(buf: str) -> tuple[int, int] | int | None:
    """Find a mid-stream end tag: (offset, chars to drop), -1 if undecided, None if absent."""
    pos = buf.find(END_TAG)
    while pos >= 0:
        after = pos + len(END_TAG)
        if pos == 0 or buf[pos - 1] not in END_QUOTES:
            if len(buf) - after < 2:
                return -1  # spec 6.5: wait for two more chars before deciding
            if buf[after] == "\n":
                # spec 6.5 wants "\n\n"; we also accept "\n" + anything (see module doc)
                return pos, len(END_TAG) + (2 if buf[after + 1] == "\n" else 1)
        pos = buf.find(END_TAG, pos + 1)
    return None


def find_boundary_end_tag(buf: str) -> int | None:
    """Find a real end tag followed only by whitespace (spec §6.5, at a boundary)."""
    pos = buf.find(END_TAG)
    while pos >= 0:
        after = pos + len(END_TAG)
        if (pos == 0 or buf[pos - 1] not in END_QUOTES) and not buf[after:].strip():
            return pos
        pos = buf.find(END_TAG, pos + 1)
    return None


class ThinkingSplitter:
    """Turn streamed assistant text into text / thinking ops (spec §6.5)."""

    __slots__ = ("_buf", "_strip_newline", "_text_seen", "state")

    def __init__(self) -> None:
        self._buf = ""
        self._strip_newline = False
        self._text_seen = False
        self.state: int = BEFORE

    @property
    def opened(self) -> bool:
        """Tell whether a thinking block was opened."""
        return self.state != BEFORE

    def feed(self, text: str) -> list[Op]:
        """Consume one text fragment; return the ops it decides."""
        ops: list[Op] = []
        if self.state == AFTER:
            if text:
                ops.append((TEXT, text))
            return ops
        buf = self._buf + text
        if self.state == BEFORE:
            buf = self._before(buf, ops, final=False)
            if self.state == BEFORE:
                self._buf = buf
                return ops
        buf = self._in(buf, ops)
        if self.state == AFTER:
            if buf:
                ops.append((TEXT, buf))
            buf = ""
        self._buf = buf
        return ops

    def boundary(self) -> list[Op]:
        """Settle held text before a tool block (spec §6.4): thinking closes, text flushes."""
        ops: list[Op] = []
        buf, self._buf = self._buf, ""
        if self.state == BEFORE:
            if buf and (self._text_seen or buf.strip()):
                self._text_seen = True
                ops.append((TEXT, buf))
        elif self.state == IN:
            self._close_at_boundary(buf, ops)
        return ops

    def finish(self) -> list[Op]:
        """Flush at end of stream (spec §6.5 end-of-stream flush)."""
        ops: list[Op] = []
        buf, self._buf = self._buf, ""
        if self.state == BEFORE:
            buf = self._before(buf, ops, final=True)
            if self.state == BEFORE:
                if buf:
                    ops.append((TEXT, buf))  # spec 6.5: even if whitespace
                return ops
        if self.state == IN:
            buf = self._in(buf, ops)
            if self.state == IN:
                self._close_at_boundary(buf, ops)
                return ops
        if buf:
            ops.append((TEXT, buf))
        return ops

    def detach(self) -> list[Op]:
        """Stop parsing tags (native reasoning took over, §6.6); return the held text.

        In BEFORE the held text is text; inside thinking it is thinking, and the thinking block
        stays open for the caller to continue.
        """
        ops: list[Op] = []
        buf, self._buf = self._buf, ""
        if self.state == BEFORE:
            if buf and (self._text_seen or buf.strip()):
                ops.append((TEXT, buf))
        elif self.state == IN:
            if self._strip_newline and buf.startswith("\n"):
                buf = buf[1:]
            if buf:
                ops.append((THINKING, buf))
        self.state = AFTER
        return ops

    def _before(self, buf: str, ops: list[Op], *, final: bool) -> str:
        pos = find_start_tag(buf, final)
        if pos is not None and pos >= 0:
            prefix = buf[:pos]
            if prefix and (self._text_seen or prefix.strip()):
                ops.append((TEXT, prefix))
            ops.append((OPEN, ""))
            self.state = IN
            self._strip_newline = True
            return buf[pos + len(START_TAG) :]
        if final:
            return buf
        cut = _cut(buf, _HOLD_BEFORE)
        if cut > 0:
            head = buf[:cut]
            if self._text_seen or head.strip():
                self._text_seen = True
                ops.append((TEXT, head))
                return buf[cut:]
        return buf

    def _in(self, buf: str, ops: list[Op]) -> str:
        if self._strip_newline and buf:
            self._strip_newline = False
            if buf[0] == "\n":
                buf = buf[1:]
        found = find_end_tag(buf)
        if isinstance(found, tuple):
            pos, drop = found
            if pos:
                ops.append((THINKING, buf[:pos]))
            ops.append((CLOSE, ""))
            self.state = AFTER
            return buf[pos + drop :]
        cut = _cut(buf, _HOLD_IN)
        if cut > 0:
            ops.append((THINKING, buf[:cut]))
            return buf[cut:]
        return buf

    def _close_at_boundary(self, buf: str, ops: list[Op]) -> None:
        if self._strip_newline and buf.startswith("\n"):
            buf = buf[1:]
        pos = find_boundary_end_tag(buf)
        if pos is not None:
            buf = buf[:pos]  # only whitespace follows the tag: dropped with it
        if buf:
            ops.append((THINKING, buf))
        ops.append((CLOSE, ""))
        self.state = AFTER
