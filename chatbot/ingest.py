"""Loaders and chunking: a knowledge file becomes langchain `Document` chunks with metadata.

Understood today: CSV with question/answer columns (`question`/`answer` or `问题`/`答案`, optional
`category`/`类别`) and Markdown. In Markdown a level-2 heading that ends in `?` or `？` is a FAQ
question whose answer is the text below it; other text is split by headings, and each chunk
carries its heading path. A FAQ question and its answer are always one chunk.

Each chunk's metadata: `id` (`<source>#<position>`), `source` (path relative to the knowledge
folder), `position`, `title`, `heading`, `kind` (`faq` or `section`), `lang`, and for FAQs the
`question` and `answer`. This module does no embedding and no indexing.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document

from chatbot.errors import ChatbotError
from chatbot.language import detect_language

SUPPORTED_SUFFIXES = (".csv", ".md", ".markdown")
MAX_SECTION_CHARS = 1200
_QUESTION_COLUMNS = ("question", "问题")
_ANSWER_COLUMNS = ("answer", "答案")
_CATEGORY_COLUMNS = ("category", "类别")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class IngestError(ChatbotError, ValueError):
    """A knowledge file that cannot be read; the text names the file and what to do."""


@dataclass
class _Section:
    heading_path: list[str]
    lines: list[str]

    @property
    def body(self) -> str:
        return "\n".join(self.lines).strip()


def load_file(path: Path, root: Path) -> list[Document]:
    """Chunks of one knowledge file; `root` makes the `source` path relative."""
    source = path.relative_to(root).as_posix()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(f"{source}: not UTF-8 text; save it as UTF-8 and try again") from e
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return chunk_faq_csv(text, source)
    if suffix in (".md", ".markdown"):
        return chunk_markdown(text, source)
    raise IngestError(f"{source}: unsupported file type '{suffix}'; use {', '.join(SUPPORTED_SUFFIXES)}")


def load_folder(root: Path) -> tuple[list[Document], list[str]]:
    """Chunks of every supported file under `root`, in a stable order (README.md files skipped),
    and one error per file that could not be read: a bad file never stops the others."""
    docs: list[Document] = []
    errors: list[str] = []
    for path in knowledge_files(root):
        try:
            docs.extend(load_file(path, root))
        except IngestError as e:
            errors.append(str(e))
    return docs, errors


def knowledge_files(root: Path) -> list[Path]:
    """The files `load_folder` reads, sorted."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and p.name.lower() != "readme.md"
    )


def faq_document(question: str, answer: str, *, source: str, position: int, title: str) -> Document:
    """One FAQ chunk: the question and its answer together."""
    question, answer = question.strip(), answer.strip()
    chunk_id = f"{source}#{position}"
    return Document(
        id=chunk_id,
        page_content=f"{question}\n{answer}",
        metadata={
            "id": chunk_id,
            "source": source,
            "position": position,
            "title": title,
            "heading": question,
            "kind": "faq",
            "lang": detect_language(question + answer),
            "question": question,
            "answer": answer,
        },
    )


def section_document(body: str, *, source: str, position: int, title: str, heading: str) -> Document:
    """One section chunk; its heading path travels with the text."""
    chunk_id = f"{source}#{position}"
    prefix = heading if heading == title else f"{title} > {heading}"
    return Document(
        id=chunk_id,
        page_content=f"{prefix}\n{body}",
        metadata={
            "id": chunk_id,
            "source": source,
            "position": position,
            "title": title,
            "heading": heading,
            "kind": "section",
            "lang": detect_language(body),
        },
    )


def chunk_faq_csv(text: str, source: str) -> list[Document]:
    """One chunk per row of a question/answer CSV."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    question_col = next((columns[c] for c in _QUESTION_COLUMNS if c in columns), None)
    answer_col = next((columns[c] for c in _ANSWER_COLUMNS if c in columns), None)
    category_col = next((columns[c] for c in _CATEGORY_COLUMNS if c in columns), None)
    if question_col is None or answer_col is None:
        raise IngestError(
            f"{source}: no question/answer columns (found: {', '.join(columns) or 'none'}); "
            f"name them 'question' and 'answer' (or '问题' and '答案')"
        )
    docs = []
    for row in reader:
        question, answer = (row.get(question_col) or "").strip(), (row.get(answer_col) or "").strip()
        if not question or not answer:
            continue
        category = (row.get(category_col) or "").strip() if category_col else ""
        title = f"FAQ: {category}" if category else "FAQ"
        docs.append(faq_document(question, answer, source=source, position=len(docs), title=title))
    return docs


def chunk_markdown(text: str, source: str) -> list[Document]:
    """Chunks of a Markdown file: FAQ pairs whole, other sections split by headings."""
    title, sections = _split_sections(text, default_title=Path(source).stem.replace("-", " ").capitalize())
    docs: list[Document] = []
    for section in sections:
        body = section.body
        if not body:
            continue
        heading = section.heading_path[-1] if section.heading_path else title
        if _is_question(heading):
            docs.append(faq_document(heading, body, source=source, position=len(docs), title=title))
            continue
        for piece in _pieces(body):
            docs.append(section_document(piece, source=source, position=len(docs), title=title, heading=heading))
    return docs


def _split_sections(text: str, default_title: str) -> tuple[str, list[_Section]]:
    title = default_title
    sections = [_Section([], [])]
    path: list[tuple[int, str]] = []
    in_fence = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            sections[-1].lines.append(line)
            continue
        level, heading = len(match.group(1)), match.group(2)
        if level == 1 and title == default_title and not path:
            title = heading
            continue
        path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, heading)]
        sections.append(_Section([h for _, h in path], []))
    return title, sections


def _is_question(heading: str) -> bool:
    return heading.rstrip().endswith(("?", "？"))


def _pieces(body: str) -> list[str]:
    """Split an over-long section at paragraph boundaries into pieces of at most MAX_SECTION_CHARS."""
    if len(body) <= MAX_SECTION_CHARS:
        return [body]
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", body):
        if current and len(current) + len(paragraph) + 2 > MAX_SECTION_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        pieces.append(current)
    return pieces
