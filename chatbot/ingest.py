"""Chunking: the parts of a knowledge file (`formats.py`) become langchain `Document` chunks.

A FAQ pair (a question/answer row, or a Markdown/HTML/DOCX heading that ends in `?` or `？` with
the text below it) is always one chunk. Other sections are split at paragraph boundaries into
chunks of at most `MAX_SECTION_CHARS`, each carrying its heading path.

Each chunk's metadata: `id` (`<source>#<position>`), `doc_id`, `source` (the document's name),
`position`, `page` (PDF pages, else none), `title`, `heading`, `kind` (`faq` or `section`),
`lang`, and for FAQs the `question` and `answer`. This module does no embedding and no indexing.
"""

from __future__ import annotations

import hashlib
import re

from langchain_core.documents import Document

from chatbot.formats import IngestError, Parsed, Part, parse
from chatbot.language import detect_language

__all__ = ["MAX_SECTION_CHARS", "IngestError", "chunk", "document_id", "read_document"]
MAX_SECTION_CHARS = 1200


def document_id(data: bytes) -> str:
    """A document's id: it comes from its content, so the same file is the same document."""
    return hashlib.sha256(data).hexdigest()[:16]


def read_document(name: str, data: bytes) -> tuple[Parsed, list[Document]]:
    """The parsed file and its chunks; an `IngestError` naming the file when it cannot be used."""
    parsed = parse(name, data)
    chunks = chunk(parsed, name, document_id(data))
    if not chunks:
        raise IngestError(f"{name}: nothing to index in it (no text, or no complete question/answer rows); check its content")
    return parsed, chunks


def chunk(parsed: Parsed, source: str, doc_id: str) -> list[Document]:
    """The chunks of one parsed file, in document order."""
    docs: list[Document] = []

    def add(text: str, heading: str, part: Part, faq: tuple[str, str] | None = None) -> None:
        chunk_id = f"{source}#{len(docs)}"
        metadata = {
            "id": chunk_id, "doc_id": doc_id, "source": source, "position": len(docs), "page": part.page,
            "title": parsed.title, "heading": heading, "kind": "section", "lang": detect_language(text),
        }
        if faq is not None:
            question, answer = faq
            metadata |= {"kind": "faq", "question": question, "answer": answer, "lang": detect_language(question + answer)}
            if part.replaces:
                metadata["replaces"] = part.replaces
            if part.category:
                metadata["title"] = f"FAQ: {part.category}"
            elif parsed.type in ("CSV", "XLSX", "JSON"):
                metadata["title"] = "FAQ"
        docs.append(Document(id=chunk_id, page_content=text, metadata=metadata))

    for part in parsed.parts:
        body = part.text.strip()
        if not body:
            continue
        heading = part.question or (part.headings[-1] if part.headings else parsed.title)
        if part.question or _is_question(heading) and part.headings:
            add(f"{heading.strip()}\n{body}", heading.strip(), part, (heading.strip(), body))
            continue
        prefix = heading if heading == parsed.title else f"{parsed.title} > {heading}"
        for piece in _pieces(body):
            add(f"{prefix}\n{piece}", heading, part)
    return docs


def _is_question(heading: str) -> bool:
    return heading.rstrip().endswith(("?", "？"))


def _pieces(body: str) -> list[str]:
    """Split an over-long section at paragraph (then line, then sentence) boundaries into pieces
    of at most MAX_SECTION_CHARS."""
    if len(body) <= MAX_SECTION_CHARS:
        return [body]
    pieces: list[str] = []
    current = ""
    for unit in _units(body):
        if current and len(current) + len(unit) + 2 > MAX_SECTION_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def _units(body: str) -> list[str]:
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        if len(paragraph) <= MAX_SECTION_CHARS:
            units.append(paragraph)
            continue
        for line in re.split(r"(?<=[.!?。！？])\s+|\n", paragraph):  # PDF pages often have no blank lines
            while len(line) > MAX_SECTION_CHARS:
                units.append(line[:MAX_SECTION_CHARS])
                line = line[MAX_SECTION_CHARS:]
            if line.strip():
                units.append(line)
    return units
