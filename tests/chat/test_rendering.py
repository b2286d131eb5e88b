from __future__ import annotations

from html.parser import HTMLParser

import pytest

from chat.rendering import render_markdown


class _Elements(HTMLParser):
    """Collects the real elements and attributes of an HTML string (text stays text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def elements(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "[click](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src='https://evil.example'></iframe>",
        '<div style="background:url(javascript:alert(1))">x</div>',
    ],
)
def test_model_output_cannot_inject_markup(hostile):
    found = elements(render_markdown(f"Here you go: {hostile}"))
    assert set(found.tags) <= {"p", "a"}
    for name, value in found.attrs:
        assert not name.startswith("on")
        assert name != "style"
        assert "javascript:" not in (value or "").lower()


def test_markdown_renders_code_lists_and_safe_links():
    html = render_markdown(
        "**bold**\n\n- one\n- two\n\n```python\nprint('hi')\n```\n[docs](https://example.com)"
    )
    assert "<strong>bold</strong>" in html
    assert "<li>one</li>" in html
    assert '<code class="language-python">' in html
    assert 'href="https://example.com"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
