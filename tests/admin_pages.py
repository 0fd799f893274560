"""Read the structure of a rendered admin list page: its columns and its object tools.

The layout at 1,280 px is checked in a browser elsewhere; these helpers keep the HTML it relies
on standard (`#content h1`, `ul.object-tools`, `#changelist table#result_list`) and the number
of columns within a budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# The widest list a 1,280 px screen shows beside the filters, the checkbox column included.
COLUMN_BUDGET = 10


@dataclass
class Tool:
    tag: str
    classes: list[str]
    text: str = ""


@dataclass
class Page:
    columns: list[str] = field(default_factory=list)  # header texts of #result_list
    tools: list[list[Tool]] = field(default_factory=list)  # per ul.object-tools li
    has_title: bool = False  # #content h1
    has_changelist: bool = False  # #changelist … table#result_list


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self.in_content = 0
        self.in_thead = False
        self.header: list[str] | None = None
        self.in_tools = False
        self.tool: Tool | None = None
        self.in_changelist = False
        self.depth = 0
        self.content_depth: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        classes = attr.get("class", "").split()
        self.depth += 1
        if attr.get("id") == "content":
            self.content_depth = self.depth
        if tag == "h1" and self.content_depth is not None:
            self.page.has_title = True
        if attr.get("id") == "changelist":
            self.in_changelist = True
        if tag == "table" and attr.get("id") == "result_list" and self.in_changelist:
            self.page.has_changelist = True
        if tag == "thead" and self.page.has_changelist:
            self.in_thead = True
        if tag == "th" and self.in_thead:
            self.header = []
        if tag == "ul" and "object-tools" in classes:
            self.in_tools = True
        if tag == "li" and self.in_tools:
            self.page.tools.append([])
        if tag in ("a", "button") and self.in_tools and self.page.tools:
            self.tool = Tool(tag, classes)
            self.page.tools[-1].append(self.tool)

    def handle_endtag(self, tag: str) -> None:
        self.depth -= 1
        if tag == "thead":
            self.in_thead = False
        if tag == "th" and self.header is not None:
            self.page.columns.append(" ".join("".join(self.header).split()))
            self.header = None
        if tag == "ul":
            self.in_tools = False
        if tag in ("a", "button"):
            self.tool = None

    def handle_data(self, data: str) -> None:
        if self.header is not None:
            self.header.append(data)
        if self.tool is not None:
            self.tool.text = " ".join((self.tool.text + " " + data).split())


def read(html: str) -> Page:
    """Return the columns, object tools and landmarks of a rendered list page."""
    reader = _Reader()
    reader.feed(html)
    return reader.page


def assert_standard_list(html: str, *, budget: int = COLUMN_BUDGET) -> Page:
    """Check a list page's landmarks, its column budget and its object tools; return it.

    Every tool is one link or button in its own `li`, shown once, in the admin's look: a
    tool of ours has the class `kg-tool` (kiro-admin.css), Django's own add link `addlink`."""
    page = read(html)
    assert page.has_title, "no #content h1"
    assert page.has_changelist, "no #changelist table#result_list"
    assert len(page.columns) <= budget, page.columns
    texts = []
    for item in page.tools:
        assert len(item) == 1, item
        tool = item[0]
        assert {"kg-tool", "addlink"} & set(tool.classes), tool
        texts.append(tool.text.lower())
    assert len(texts) == len(set(texts)), texts
    return page
