"""Chunking: a FAQ pair is one chunk, headings travel with their sections, metadata is complete."""

import pytest

from chatbot import ingest
from chatbot.ingest import IngestError, chunk_faq_csv, chunk_markdown, load_folder
from chatbot.language import detect_language


def test_each_csv_row_is_one_faq_chunk_with_question_and_answer():
    docs = chunk_faq_csv("question,answer,category\nQ one?,A one.,shipping\nQ two?,\"A two, with comma.\",\n", "faq.csv")
    assert [d.page_content for d in docs] == ["Q one?\nA one.", "Q two?\nA two, with comma."]
    first = docs[0].metadata
    assert first == {
        "id": "faq.csv#0", "source": "faq.csv", "position": 0, "title": "FAQ: shipping", "heading": "Q one?",
        "kind": "faq", "lang": "en", "question": "Q one?", "answer": "A one.",
    }
    assert docs[1].metadata["title"] == "FAQ"


def test_chinese_column_names_are_understood():
    docs = chunk_faq_csv("问题,答案\n怎么退货？,登录账户申请退货。\n", "zh/faq.csv")
    assert docs[0].metadata["question"] == "怎么退货？" and docs[0].metadata["lang"] == "zh"


def test_a_csv_without_question_answer_columns_is_refused_naming_the_file():
    with pytest.raises(IngestError, match=r"bad.csv: no question/answer columns \(found: name, price\)"):
        chunk_faq_csv("name,price\nlamp,10\n", "bad.csv")


def test_markdown_question_headings_are_faq_pairs_in_one_chunk():
    text = "# Orders FAQ\n\n## Can I cancel my order?\n\nYes, within one hour.\n\nAfter that, contact us.\n\n## 可以开发票吗？\n\n可以。\n"
    docs = chunk_markdown(text, "orders.md")
    assert [d.metadata["kind"] for d in docs] == ["faq", "faq"]
    assert docs[0].page_content == "Can I cancel my order?\nYes, within one hour.\n\nAfter that, contact us."
    assert docs[0].metadata["title"] == "Orders FAQ"
    assert docs[1].metadata["question"] == "可以开发票吗？"


def test_markdown_sections_carry_title_and_heading():
    text = "# Returns policy\n\nIntro text.\n\n## Opened items\n\nFee applies.\n\n### Exceptions\n\nPlants.\n"
    docs = chunk_markdown(text, "returns.md")
    assert [d.page_content for d in docs] == [
        "Returns policy\nIntro text.",
        "Returns policy > Opened items\nFee applies.",
        "Returns policy > Exceptions\nPlants.",
    ]
    assert all(d.metadata["kind"] == "section" for d in docs)


def test_a_long_section_is_split_at_paragraphs_each_piece_keeping_its_heading(monkeypatch):
    monkeypatch.setattr(ingest, "MAX_SECTION_CHARS", 50)
    paragraphs = [f"Paragraph {n} " + "x" * 30 for n in range(3)]
    docs = chunk_markdown("# T\n\n## H\n\n" + "\n\n".join(paragraphs), "t.md")
    assert [d.page_content for d in docs] == [f"T > H\n{p}" for p in paragraphs]


def test_load_folder_reads_supported_files_and_skips_readme(knowledge_dir):
    docs, errors = load_folder(knowledge_dir)
    assert errors == []
    assert {d.metadata["source"] for d in docs} == {"en/faq.csv", "zh/faq.csv", "en/returns.md"}
    assert len({d.metadata["id"] for d in docs}) == len(docs)


def test_undecodable_text_is_refused_naming_the_file(tmp_path):
    (tmp_path / "x.md").write_bytes("退货".encode("gb18030"))
    with pytest.raises(IngestError, match="x.md: not UTF-8 text"):
        ingest.load_file(tmp_path / "x.md", tmp_path)


@pytest.mark.parametrize(
    ("text", "lang"),
    [("How long does delivery take?", "en"), ("标准快递多久能送到？", "zh"), ("iPhone 充电器可以退吗", "zh"), ("ok", "en"), ("", "en")],
)
def test_language_detection(text, lang):
    assert detect_language(text) == lang


def test_a_bad_file_in_the_folder_is_reported_and_the_others_still_load(knowledge_dir):
    (knowledge_dir / "en" / "bad.md").write_bytes("退货".encode("gb18030"))
    (knowledge_dir / "en" / "prices.csv").write_text("name,price\nlamp,10\n", encoding="utf-8")
    docs, errors = load_folder(knowledge_dir)
    assert {d.metadata["source"] for d in docs} == {"en/faq.csv", "zh/faq.csv", "en/returns.md"}
    assert errors == [
        "en/bad.md: not UTF-8 text; save it as UTF-8 and try again",
        "en/prices.csv: no question/answer columns (found: name, price); name them 'question' and 'answer' (or '问题' and '答案')",
    ]
