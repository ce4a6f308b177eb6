"""Reading and chunking every knowledge format: a FAQ pair is one chunk, headings travel with
their sections, pages are kept, and each bad file is refused with its name and what to do."""

import pytest

from chatbot import ingest
from chatbot.ingest import IngestError, read_document
from chatbot.language import detect_language
from tests import files


def chunks(name: str, data: bytes | str):
    return read_document(name, data.encode() if isinstance(data, str) else data)[1]


def test_each_csv_row_is_one_faq_chunk_with_question_and_answer():
    docs = chunks("faq.csv", "question,answer,category\nQ one?,A one.,shipping\nQ two?,\"A two, with comma.\",\n")
    assert [d.page_content for d in docs] == ["Q one?\nA one.", "Q two?\nA two, with comma."]
    first = docs[0].metadata
    assert first == {
        "id": "faq.csv#0", "doc_id": ingest.document_id(b"question,answer,category\nQ one?,A one.,shipping\nQ two?,\"A two, with comma.\",\n"),
        "source": "faq.csv", "position": 0, "page": None, "title": "FAQ: shipping", "heading": "Q one?",
        "kind": "faq", "lang": "en", "question": "Q one?", "answer": "A one.",
    }
    assert docs[1].metadata["title"] == "FAQ"


def test_chinese_column_names_are_understood_in_csv_xlsx_and_json():
    csv_docs = chunks("zh/faq.csv", "问题,答案\n怎么退货？,登录账户申请退货。\n")
    xlsx_docs = chunks("faq.xlsx", files.xlsx([["问题", "答案"], ["怎么退货？", "登录账户申请退货。"]]))
    json_docs = chunks("faq.json", '[{"问题": "怎么退货？", "答案": "登录账户申请退货。"}]')
    for docs in (csv_docs, xlsx_docs, json_docs):
        assert docs[0].metadata["question"] == "怎么退货？" and docs[0].metadata["lang"] == "zh"


def test_markdown_question_headings_are_faq_pairs_in_one_chunk():
    text = "# Orders FAQ\n\n## Can I cancel my order?\n\nYes, within one hour.\n\nAfter that, contact us.\n\n## 可以开发票吗？\n\n可以。\n"
    docs = chunks("orders.md", text)
    assert [d.metadata["kind"] for d in docs] == ["faq", "faq"]
    assert docs[0].page_content == "Can I cancel my order?\nYes, within one hour.\n\nAfter that, contact us."
    assert docs[0].metadata["title"] == "Orders FAQ"
    assert docs[1].metadata["question"] == "可以开发票吗？"


def test_markdown_sections_carry_title_and_heading():
    text = "# Returns policy\n\nIntro text.\n\n## Opened items\n\nFee applies.\n\n### Exceptions\n\nPlants.\n"
    docs = chunks("returns.md", text)
    assert [d.page_content for d in docs] == [
        "Returns policy\nIntro text.",
        "Returns policy > Opened items\nFee applies.",
        "Returns policy > Exceptions\nPlants.",
    ]
    assert all(d.metadata["kind"] == "section" for d in docs)


def test_a_long_section_is_split_at_paragraphs_each_piece_keeping_its_heading(monkeypatch):
    monkeypatch.setattr(ingest, "MAX_SECTION_CHARS", 50)
    paragraphs = [f"Paragraph {n} " + "x" * 30 for n in range(3)]
    docs = chunks("t.md", "# T\n\n## H\n\n" + "\n\n".join(paragraphs))
    assert [d.page_content for d in docs] == [f"T > H\n{p}" for p in paragraphs]


def test_pdf_pages_become_chunks_that_keep_their_page_number():
    data = files.pdf(["Lamp setup. Plug the lamp in and hold the button for three seconds.", "Cleaning. Wipe it with a dry cloth."], title="Lamp manual")
    docs = chunks("manual.pdf", data)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    assert docs[0].metadata["title"] == "Lamp manual"
    assert "hold the button for three seconds" in docs[0].page_content


def test_docx_headings_paragraphs_and_tables_are_kept_and_a_question_table_is_faq_pairs():
    data = files.docx("Care guide", {"Watering": "Water weekly.", "Light": "Bright indirect light."}, faq=[("Can I repot in winter?", "Better in spring.")], table=[["Size", "Pot"], ["S", "12 cm"]])
    docs = chunks("care.docx", data)
    assert docs[0].page_content == "Care guide > Watering\nWater weekly."
    assert "S | 12 cm" in docs[1].page_content and docs[1].metadata["heading"] == "Light"
    assert docs[2].metadata["kind"] == "faq" and docs[2].metadata["answer"] == "Better in spring."


def test_html_keeps_only_the_visible_text_under_its_headings():
    page = (
        "<html><head><title>Store</title><style>p {color: red}</style></head><body><h1>Hours</h1><p>We open at 9.</p>"
        "<div hidden>hidden one</div><p style='display: none'>hidden two</p><script>alert('x')</script>"
        "<h2>Holidays</h2><ul><li>Closed on 1 May</li></ul></body></html>"
    )
    docs = chunks("hours.html", page)
    assert [d.page_content for d in docs] == ["Hours\nWe open at 9.", "Hours > Holidays\nClosed on 1 May"]


@pytest.mark.parametrize(("encoding", "name"), [("utf-8", "a.txt"), ("utf-8-sig", "b.txt"), ("gb18030", "c.txt"), ("gbk", "d.txt")])
def test_text_in_utf8_with_or_without_bom_and_gb18030_or_gbk_is_read(encoding, name):
    docs = chunks(name, "退货需要在三十天内申请。Returns within 30 days.".encode(encoding))
    assert docs[0].page_content.endswith("退货需要在三十天内申请。Returns within 30 days.")


@pytest.mark.parametrize(
    ("text", "lang"),
    [("How long does delivery take?", "en"), ("标准快递多久能送到？", "zh"), ("iPhone 充电器可以退吗", "zh"), ("ok", "en"), ("", "en")],
)
def test_language_detection(text, lang):
    assert detect_language(text) == lang


def test_a_csv_row_cut_by_an_unquoted_comma_is_refused_with_its_line():
    with pytest.raises(IngestError, match=r'wrap.csv: line 3 has 3 cells but the header has 2; put text that contains commas in double quotes'):
        read_document("wrap.csv", b"question,answer\nDo you ship?,Yes.\nDo you wrap gifts?,Yes: EUR 3, chosen at checkout.\n")
    trailing = chunks("ok.csv", "question,answer\nDo you ship?,Yes.,,\n")  # empty cells after the answer are harmless
    assert trailing[0].metadata["answer"] == "Yes."
