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


_THINGS = ["moon lamp", "fern", "olive tree", "desk lamp", "monstera", "cactus set", "bamboo shelf", "linen shade", "orchid", "rattan basket"]
_VERBS = ["clean", "water", "assemble", "repot", "store", "ship", "return", "repair", "install", "wrap"]
_ZH_THINGS = ["月亮灯", "蕨类植物", "橄榄树", "台灯", "龟背竹", "仙人掌组合", "竹制书架", "亚麻灯罩", "兰花", "藤编篮"]
_ZH_VERBS = ["清洁", "浇水", "组装", "换盆", "存放", "寄送", "退回", "维修", "安装", "包装"]


def _sentence(rng, n: int) -> str:
    thing, verb = rng.choice(_THINGS), rng.choice(_VERBS)
    return (
        f"To {verb} the {thing} (model {n}), allow {rng.randint(2, 40)} minutes and use the {rng.choice(['soft', 'dry', 'damp', 'padded'])} "
        f"{rng.choice(['cloth', 'box', 'tool', 'tray'])} supplied; keep it {rng.choice(['away from radiators', 'in bright shade', 'upright', 'unplugged'])}."
    )


def _zh_sentence(rng, n: int) -> str:
    return f"{rng.choice(_ZH_VERBS)}{rng.choice(_ZH_THINGS)}（型号{n}）大约需要{rng.randint(2, 40)}分钟，请使用随附的{rng.choice(['软布', '包装盒', '工具', '托盘'])}，并{rng.choice(['远离暖气', '放在明亮的散射光下', '保持直立', '先拔掉电源'])}。"


def _paragraph(rng, n: int, zh: bool = False) -> str:
    make = _zh_sentence if zh else _sentence
    return ("" if zh else " ").join(make(rng, n * 10 + k) for k in range(rng.randint(3, 5)))


def mixed_corpus(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """`count` generated documents cycling through every format (some Chinese), as (name, bytes)."""
    import random

    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for n in range(count):
        kind = ["md", "csv", "pdf", "docx", "html", "txt", "json", "xlsx", "zh.md", "zh.csv"][n % 10]
        thing = rng.choice(_THINGS)
        if kind == "md":
            body = "\n\n".join(f"## {thing.title()} {part}\n\n{_paragraph(rng, n)}\n\n{_paragraph(rng, n)}" for part in ("setup", "care", "storage"))
            out.append((f"guide-{n}.md", f"# {thing.title()} guide {n}\n\n{body}\n".encode()))
        elif kind == "zh.md":
            body = "\n\n".join(f"## {part}\n\n{_paragraph(rng, n, True)}" for part in ("安装", "养护", "存放"))
            out.append((f"zh-guide-{n}.md", f"# {rng.choice(_ZH_THINGS)}指南 {n}\n\n{body}\n".encode()))
        elif kind in ("csv", "json", "xlsx"):
            pairs = [(f"How do I {rng.choice(_VERBS)} the {rng.choice(_THINGS)} number {n}-{k}?", _paragraph(rng, n)) for k in range(5)]
            if kind == "csv":
                out.append((f"faq-{n}.csv", _csv([("question", "answer"), *pairs])))
            elif kind == "json":
                out.append((f"faq-{n}.json", faq_json(pairs)))
            else:
                out.append((f"faq-{n}.xlsx", xlsx([["question", "answer"], *[list(p) for p in pairs]])))
        elif kind == "zh.csv":
            pairs = [(f"如何{rng.choice(_ZH_VERBS)}{rng.choice(_ZH_THINGS)}（{n}-{k}）？", _paragraph(rng, n, True)) for k in range(5)]
            out.append((f"zh-faq-{n}.csv", _csv([("问题", "答案"), *pairs])))
        elif kind == "pdf":
            out.append((f"manual-{n}.pdf", pdf([_paragraph(rng, n) + "\n\n" + _paragraph(rng, n) for _ in range(3)], title=f"{thing.title()} manual {n}")))
        elif kind == "docx":
            out.append((f"notes-{n}.docx", docx(f"{thing.title()} notes {n}", {"Use": _paragraph(rng, n), "Care": _paragraph(rng, n)}, faq=[(f"Is the {thing} {n} waterproof?", _paragraph(rng, n))])))
        elif kind == "html":
            sections = "".join(f"<h2>{thing.title()} {part}</h2><p>{_paragraph(rng, n)}</p><p>{_paragraph(rng, n)}</p>" for part in ("delivery", "returns"))
            out.append((f"page-{n}.html", f"<html><head><title>{thing}</title><script>var x = 1;</script></head><body><h1>{thing.title()} page {n}</h1>{sections}</body></html>".encode()))
        else:
            text = "\n\n".join(_paragraph(rng, n, zh=n % 20 == 5) for _ in range(3))
            out.append((f"note-{n}.txt", text.encode("gbk" if n % 20 == 5 else "utf-8")))
    return out


def _csv(rows: list[tuple[str, str]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()
