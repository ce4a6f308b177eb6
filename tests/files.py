"""Knowledge files made on the fly, good and bad, for the tests and bench/ingest.py."""

from __future__ import annotations

import io
import json
import zipfile


def pdf(pages: list[str], title: str = "") -> bytes:
    """A PDF with one page per text (Latin-1 text, fpdf2's core font)."""
    from fpdf import FPDF

    doc = FPDF()
    if title:
        doc.set_title(title)
    doc.set_font("Helvetica", size=11)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 6, text)
    return bytes(doc.output())


def scanned_pdf(pages: int = 2) -> bytes:
    """A PDF whose pages hold only drawings, no text: what a scan looks like to a text extractor."""
    from fpdf import FPDF

    doc = FPDF()
    for _ in range(pages):
        doc.add_page()
        doc.rect(20, 20, 100, 60, style="F")
    return bytes(doc.output())


def docx(title: str, sections: dict[str, str], faq: list[tuple[str, str]] | None = None, table: list[list[str]] | None = None) -> bytes:
    """A DOCX: a title, a Heading 1 and paragraph per section, optionally a question/answer table and another table."""
    import docx as python_docx

    document = python_docx.Document()
    document.add_heading(title, level=0)
    for heading, text in sections.items():
        document.add_heading(heading, level=1)
        document.add_paragraph(text)
    for rows in ([["Question", "Answer"], *faq] if faq else None, table):
        if rows:
            grid = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx(rows: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def faq_json(pairs: list[tuple[str, str]]) -> bytes:
    return json.dumps([{"question": q, "answer": a} for q, a in pairs], ensure_ascii=False).encode()


def zip_bomb_docx(unpacked_mb: int = 120) -> bytes:
    """A DOCX-named zip whose one member inflates to `unpacked_mb` MB of zeros (a few hundred KB packed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as member:
            block = b"\0" * 2**20
            for _ in range(unpacked_mb):
                member.write(block)
    return out.getvalue()
