"""Files to sections of text, each with the heading path and page it sits under.

Plain text, Markdown, HTML and PDF. Headings and page numbers survive
extraction because citations name them. Parsing uses the standard library and
pypdf only: nothing here fetches anything.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath

from appliance.knowledge.errors import DocumentRejected, UnsupportedDocument

MEDIA_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Section:
    """A paragraph-sized piece of a document."""

    text: str
    heading: str = ""
    page: int | None = None


@dataclass
class Extracted:
    media_type: str
    title: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None


def media_type_of(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in MEDIA_TYPES:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise UnsupportedDocument(
            f"{filename}: files of type '{suffix or 'none'}' are not supported; use one of {known}"
        )
    return MEDIA_TYPES[suffix]


def extract(filename: str, data: bytes) -> Extracted:
    """The sections of one file; raises DocumentRejected naming the file and the reason."""
    media_type = media_type_of(filename)
    if not data.strip():
        raise DocumentRejected(f"{filename} is empty")
    stem = PurePath(filename).stem
    if media_type == "application/pdf":
        extracted = _pdf(filename, data, stem)
    else:
        text = _decode(filename, data)
        if media_type == "text/html":
            extracted = _html(text, stem)
        elif media_type == "text/markdown":
            extracted = _markdown(text, stem)
        else:
            extracted = Extracted(media_type, stem, [Section(p) for p in paragraphs(text)])
    if not extracted.sections:
        raise DocumentRejected(f"{filename} holds no text to index")
    return extracted


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs with whitespace collapsed."""
    return [p for p in (" ".join(block.split()) for block in re.split(r"\n\s*\n", text)) if p]


def _decode(filename: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise UnsupportedDocument(f"{filename} looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentRejected(
            f"{filename} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8 and upload it again"
        ) from None


# Markdown ----------------------------------------------------------------

_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown(text: str, stem: str) -> Extracted:
    headings: list[tuple[int, str]] = []
    sections: list[Section] = []
    block: list[str] = []
    in_fence = False

    def flush() -> None:
        path = HEADING_SEPARATOR.join(name for _, name in headings)
        pieces = ["\n".join(block).strip()] if in_fence else paragraphs("\n".join(block))
        sections.extend(Section(p, path) for p in pieces if p)
        block.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            # A fenced block is one paragraph, whatever blank lines it holds.
            if in_fence:
                block.append(line)
            flush()
            in_fence = not in_fence
            if in_fence:
                block.append(line)
            continue
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2).strip())]
        else:
            block.append(line)
    flush()
    title = next((name for level, name in _all_headings(text) if level == 1), stem)
    return Extracted("text/markdown", title, sections)


def _all_headings(text: str) -> list[tuple[int, str]]:
    return [(len(m.group(1)), m.group(2).strip()) for m in map(_ATX_HEADING.match, text.splitlines()) if m]


# HTML --------------------------------------------------------------------

_SKIPPED = {"script", "style", "noscript", "template", "nav", "header", "footer", "svg", "head"}
_BLOCKS = {
    "p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "pre", "blockquote",
    "table", "tr", "br", "hr", "figure", "figcaption", "aside", "body",
}  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}


class _HtmlSections(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self.title = ""
        self.headings: list[tuple[int, str]] = []
        self.buffer: list[str] = []
        self.skip_depth = 0
        self.in_title = False
        self.heading_level: int | None = None
        self.stack: list[tuple[str, bool]] = []

    def _heading_path(self) -> str:
        return HEADING_SEPARATOR.join(name for _, name in self.headings)

    def _flush(self) -> None:
        text = " ".join("".join(self.buffer).split())
        self.buffer.clear()
        if not text:
            return
        if self.heading_level is not None:
            self.headings = [h for h in self.headings if h[0] < self.heading_level] + [(self.heading_level, text)]
        else:
            self.sections.append(Section(text, self._heading_path()))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").lower()
        # Navigation bars (Prev / Up / Next) repeat on every page of a manual.
        skipped = tag in _SKIPPED or "navheader" in classes or "navfooter" in classes
        if tag == "title":
            self.in_title = True
        if tag not in _VOID:
            self.stack.append((tag, skipped))
        if skipped:
            self.skip_depth += 1
            return
        if tag in _HEADINGS or tag in _BLOCKS:
            self._flush()
        if tag in _HEADINGS:
            self.heading_level = _HEADINGS[tag]

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, skipped = self.stack.pop()
            if skipped:
                self.skip_depth -= 1
            if open_tag == tag:
                break
        if self.skip_depth:
            return
        if tag in _HEADINGS or tag in _BLOCKS:
            self._flush()
        if tag in _HEADINGS:
            self.heading_level = None

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif not self.skip_depth:
            self.buffer.append(data)


def _html(text: str, stem: str) -> Extracted:
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    parser.heading_level = None
    parser._flush()
    title = " ".join(parser.title.split()) or (parser.headings[0][1] if parser.headings else stem)
    return Extracted("text/html", title, parser.sections)


# PDF ---------------------------------------------------------------------


def _pdf(filename: str, data: bytes, stem: str) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip().startswith(b"%PDF-"):
        raise DocumentRejected(f"{filename} is not a PDF file (it does not start with %PDF-)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentRejected(f"{filename} is password-protected; upload a copy without the password")
        sections: list[Section] = []
        for number, page in enumerate(reader.pages, start=1):
            sections.extend(Section(p, "", number) for p in paragraphs(_page_text(page)))
        pages = len(reader.pages)
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except DocumentRejected:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise DocumentRejected(f"{filename} is a damaged PDF that cannot be read ({exc})") from None
    except Exception as exc:  # pypdf raises many kinds on broken files
        if type(exc).__module__.startswith("pypdf"):
            raise DocumentRejected(f"{filename} is a damaged PDF that cannot be read ({exc})") from None
        raise
    if not sections:
        raise DocumentRejected(f"{filename} has no text layer (a scanned PDF?); OCR is not supported")
    return Extracted("application/pdf", " ".join(str(meta_title).split()) or stem, sections, pages)


def _page_text(page) -> str:
    # pypdf ends lines with \n; a line that ends a sentence or is short marks a paragraph end.
    lines = (page.extract_text() or "").splitlines()
    out: list[str] = []
    for line in lines:
        out.append(line)
        if not line.strip() or re.search(r"[.!?:]\s*$", line) and len(line) < 60:
            out.append("")
    return "\n".join(out)
