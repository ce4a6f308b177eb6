"""Readers: the bytes of one knowledge file become `Part`s, a FAQ pair or a section of text under
its heading path, in document order. `ingest.py` turns parts into chunks.

Understood: PDF (pypdf, a part per page), DOCX (python-docx: headings from the paragraph styles,
tables kept, a question/answer table read as FAQ pairs), Markdown, HTML (visible text only), TXT
(UTF-8, UTF-8 with BOM, GB18030/GBK), CSV and XLSX with question/answer columns (`question`/`answer`
or `问题`/`答案`, optional `category`/`类别`, and `replaces`/`替换`: the question of an entry of
another document that this row edits, `kb.py`), and JSON (a list of `{question, answer}`).

Every refusal is an `IngestError` whose text names the file and says what to do. Nothing here
embeds, indexes or writes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from chatbot.errors import ChatbotError

SUFFIXES = {
    ".pdf": "PDF", ".docx": "DOCX", ".md": "Markdown", ".markdown": "Markdown", ".html": "HTML", ".htm": "HTML",
    ".txt": "TXT", ".csv": "CSV", ".xlsx": "XLSX", ".json": "JSON",
}
QUESTION_COLUMNS = ("question", "问题")
ANSWER_COLUMNS = ("answer", "答案")
CATEGORY_COLUMNS = ("category", "类别")
REPLACES_COLUMNS = ("replaces", "替换")  # the question of another document's entry that this row edits
# A DOCX/XLSX is a zip: refuse one that would inflate past this, or far past its own size.
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_ZIP_RATIO = 100
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
logging.getLogger("pypdf").setLevel(logging.ERROR)  # our own error says what is wrong and what to do
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


class IngestError(ChatbotError, ValueError):
    """A knowledge file that cannot be taken in; the text names the file and what to do."""


@dataclass
class Part:
    """A FAQ pair (`question` set) or a section of text under `headings` (outermost first)."""

    text: str
    headings: list[str] = field(default_factory=list)
    question: str = ""
    category: str = ""
    page: int | None = None
    replaces: str = ""  # a FAQ row that edits another document's entry: that entry's question


@dataclass
class Parsed:
    title: str
    parts: list[Part]
    type: str


def file_type(name: str) -> str:
    """The type label of a file name ("PDF", ...), or an IngestError saying which types are known."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(sorted(set(SUFFIXES.values())))
        raise IngestError(f"{name}: unsupported file type '{suffix or 'none'}'; upload one of {known}")
    return SUFFIXES[suffix]


def parse(name: str, data: bytes) -> Parsed:
    """The parts of the file `name` with content `data`."""
    kind = file_type(name)
    if not data.strip():
        raise IngestError(f"{name}: the file is empty; upload it again with its content")
    title = _default_title(name)
    readers = {
        "PDF": _read_pdf, "DOCX": _read_docx, "Markdown": _read_markdown, "HTML": _read_html, "TXT": _read_txt,
        "CSV": _read_csv, "XLSX": _read_xlsx, "JSON": _read_json,
    }
    title, parts = readers[kind](name, data, title)
    if not any(p.text.strip() for p in parts):
        raise IngestError(f"{name}: no text found in it; check that the file has content and upload it again")
    return Parsed(title, parts, kind)


def decode_text(name: str, data: bytes) -> str:
    """Text in UTF-8 (with or without BOM) or GB18030 (which covers GBK and GB2312)."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "gb18030" and _looks_binary(text):
            break
        return text
    raise IngestError(f"{name}: not readable as UTF-8 or GB18030/GBK text; save it as UTF-8 and upload it again")


def _looks_binary(text: str) -> bool:
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    return controls > max(2, len(text) // 100)


def _default_title(name: str) -> str:
    return PurePosixPath(name).stem.replace("-", " ").replace("_", " ").strip().capitalize() or name


# --- text formats -------------------------------------------------------------------------------


def _read_markdown(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    return markdown_parts(decode_text(name, data), title)


def markdown_parts(text: str, title: str) -> tuple[str, list[Part]]:
    """Sections split at headings; a level-1 heading first in the file is the title."""
    parts = [Part("", [])]
    path: list[tuple[int, str]] = []
    in_fence = False
    titled = False
    lines: list[str] = []

    def close() -> None:
        parts[-1].text = "\n".join(lines).strip()
        lines.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        level, heading = len(match.group(1)), match.group(2)
        if level == 1 and not path and not titled:
            title, titled = heading, True
            continue
        close()
        path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
        parts.append(Part("", [h for _, h in path]))
    close()
    return title, [p for p in parts if p.text]


def _read_txt(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    return title, [Part(decode_text(name, data).strip(), [])]


def _read_html(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(name, data), "html.parser")
    if soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(strip=True)
    for tag in soup(["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "form", "button"]):
        tag.decompose()
    for tag in soup.find_all(True):
        if tag.decomposed:
            continue
        if tag.has_attr("hidden") or tag.get("aria-hidden") == "true" or _HIDDEN_STYLE.search(str(tag.get("style", ""))):
            tag.decompose()
    for level in range(1, 7):  # headings become Markdown headings, so sections split the same way
        for tag in soup.find_all(f"h{level}"):
            tag.replace_with(f"\n\n{'#' * level} {tag.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(["p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol", "dd", "dt"]):
        tag.insert_after("\n")
    text = "\n".join(re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in soup.get_text().splitlines())
    return markdown_parts(re.sub(r"\n{3,}", "\n\n", text), title)


# --- question/answer tables ----------------------------------------------------------------------


def faq_rows(name: str, header: list[str], rows: list[list[str]]) -> list[Part]:
    """FAQ parts from a table whose header names the question and answer columns."""
    columns = {str(c or "").strip().lower(): i for i, c in enumerate(header)}
    question = next((columns[c] for c in QUESTION_COLUMNS if c in columns), None)
    answer = next((columns[c] for c in ANSWER_COLUMNS if c in columns), None)
    category = next((columns[c] for c in CATEGORY_COLUMNS if c in columns), None)
    replaces = next((columns[c] for c in REPLACES_COLUMNS if c in columns), None)
    if question is None or answer is None:
        found = ", ".join(c for c in columns if c) or "none"
        raise IngestError(f"{name}: no question/answer columns (found: {found}); name them 'question' and 'answer' (or '问题' and '答案')")
    parts = []
    for row in rows:
        q, a = _cell(row, question), _cell(row, answer)
        if q and a:
            parts.append(Part(a, [], question=q, category=_cell(row, category), replaces=_cell(row, replaces)))
    return parts


def _cell(row: list, column: int | None) -> str:
    if column is None or column >= len(row) or row[column] is None:
        return ""
    return str(row[column]).strip()


def _read_csv(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    reader = csv.reader(io.StringIO(decode_text(name, data)))
    rows = []
    for row in reader:
        if rows and len(row) > len(rows[0]) and any(cell.strip() for cell in row[len(rows[0]) :]):
            # An unquoted comma: the rest of the answer would be cut off without a word.
            raise IngestError(
                f"{name}: line {reader.line_num} has {len(row)} cells but the header has {len(rows[0])}; put text that "
                f'contains commas in double quotes ("Yes, we do") and upload it again'
            )
        rows.append(row)
    return title, faq_rows(name, rows[0] if rows else [], rows[1:])


def _read_json(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    try:
        items = json.loads(decode_text(name, data))
    except json.JSONDecodeError as e:
        raise IngestError(f"{name}: not valid JSON ({e}); it must be a list of {{\"question\": ..., \"answer\": ...}}") from e
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise IngestError(f"{name}: must be a JSON list of {{\"question\": ..., \"answer\": ...}} objects")
    header = sorted({str(k) for item in items for k in item})
    return title, faq_rows(name, header, [[item.get(k) for k in header] for item in items])


def _check_zip(name: str, data: bytes, kind: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise IngestError(f"{name}: not a readable {kind} file (corrupt or not really {kind}); open it in its editor, save it again and upload it") from e
    unzipped = sum(m.file_size for m in members)
    if unzipped > MAX_UNZIPPED_BYTES or unzipped > MAX_ZIP_RATIO * max(len(data), 1024 * 1024):
        raise IngestError(
            f"{name}: refused: it would unpack to {unzipped / 2**20:.0f} MB from {len(data) / 2**20:.1f} MB "
            f"(a zip bomb, or a file padded far beyond its text); save its text in a new {kind} and upload that"
        )
    return archive


def _read_xlsx(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    import openpyxl

    _check_zip(name, data, "XLSX")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds on a broken workbook
        raise IngestError(f"{name}: not a readable XLSX workbook ({type(e).__name__}); open it in Excel, save it again and upload it") from e
    parts: list[Part] = []
    errors: list[str] = []
    for sheet in book.worksheets:
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        if not rows:
            continue
        try:
            parts += faq_rows(name, [str(c or "") for c in rows[0]], rows[1:])
        except IngestError as e:
            errors.append(str(e))
    book.close()
    if not parts and errors:
        raise IngestError(errors[0])
    return title, parts


# --- office and PDF documents --------------------------------------------------------------------


def _read_docx(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    _check_zip(name, data, "DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as e:  # python-docx raises KeyError, ValueError, PackageNotFoundError, ...
        raise IngestError(f"{name}: not a readable DOCX document ({type(e).__name__}); open it in Word, save it again as .docx and upload it") from e
    if document.core_properties.title:
        title = document.core_properties.title
    lines: list[str] = []
    faqs: list[Part] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            style = (block.style.name if block.style is not None else "") or ""
            level = _heading_level(style)
            if text and level is not None:
                lines += ["", f"{'#' * level} {text}", ""]
            elif text:
                lines += [text, ""]
        elif isinstance(block, Table):
            rows = [[cell.text.strip() for cell in row.cells] for row in block.rows]
            if not rows:
                continue
            try:
                faqs += faq_rows(name, rows[0], rows[1:])
            except IngestError:  # an ordinary table: its rows stay in the section text
                lines += [" | ".join(dict.fromkeys(c for c in row if c)) for row in rows] + [""]
    title, parts = markdown_parts("\n".join(lines), title)
    return title, parts + faqs


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return min(int(match.group(1)) + 1, 6) if match else None  # Heading 1 is a section under the title


def _read_pdf(name: str, data: bytes, title: str) -> tuple[str, list[Part]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError(f"{name}: the PDF is password-protected; save an unprotected copy and upload that")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except IngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as e:
        raise IngestError(f"{name}: not a readable PDF ({type(e).__name__}: {e}); export it to PDF again and upload it") from e
    if not any(p.strip() for p in pages):
        raise IngestError(
            f"{name}: no text could be extracted from its {len(pages)} page(s); it looks scanned. "
            f"Run OCR on it (or export it with its text) and upload it again"
        )
    title = meta_title.strip() or title
    return title, [Part(_tidy(text), [], page=n) for n, text in enumerate(pages, 1) if text.strip()]


def _tidy(text: str) -> str:
    """Extracted PDF text: spaces collapsed, line breaks inside a paragraph kept as they are."""
    return "\n".join(re.sub(r"[ \t]+", " ", line).strip() for line in text.splitlines()).strip()
