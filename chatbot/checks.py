"""Checks in code of a generated answer against its evidence sentences, before the customer sees it.

The small LM misreads what it is given ("1 year" where the passage says 2, "No" to opened returns),
so a paraphrase is shown only when every check passes (`check`); otherwise the customer gets the
quoted sentence alone (`dialogue.py`). The checks:

- **Quantities**: every number, price, duration and date in the answer is in the evidence, after
  normalising: digits, English number words and Chinese numerals are values ("two" = "2" = "两" =
  "二"); a duration is counted in days or months ("2 years" = "24 months", "2 weeks" = "14 days",
  "两年" = "2年"). A quantity with a unit must match one with the same unit; a bare number must match
  any value in the evidence.
- **Negations and conditions**: a negation in the answer ("not", "no", "cannot"; 不, 没有, 无法)
  needs one in the evidence; each condition word in the answer ("only", "unless", "unopened",
  "opened"; 仅, 除非, 未拆封, 已拆封) must be in the evidence as a word.
- **Language**: an answer in another language than its evidence (an English question answered
  from Chinese passages) cannot be compared with it word for word, so it is not shown.
- **Verdict**: an answer that opens with "Yes" (是的, 可以) must not stand against a negated
  best sentence unless it carries a negation itself ("Yes, but not after 14 days"); nor may it
  open with two verdicts that disagree ("Yes, No. You can apply the code now.", "是的，不可以。"),
  each a word of its own before a comma or a stop ("Yes, no fee is charged" opens with one).
- **Content**: an answer must say something beyond a verdict ("是", "Yes, No.", "是的，可以。" are
  not answers; nor is "Yes, you can.", whose words are all stop words).
- **Echo**: more of the words of an answer without a negation (Chinese: character pairs) must come
  from the evidence than from the question alone. "Yes, there is a showroom where you can see the lamps" beside "Replacement bulbs
  are sold in the Lighting section." restates the question as a claim; the evidence does not say
  it. (A denial, "No, the shipping fee does not count", is held by the negation check instead.) An
  answer that asks a question (the customer's own, repeated) is not shown either.
- **Denial**: an answer with a negation must be what one negated evidence sentence says (half
  its words or more in that sentence or the titles). "No, the warranty does not cover a toaster
  that stopped heating" takes its "not" from "The warranty does not cover accidental damage …" and
  its toaster from "… toasters … have a 2-year warranty": no sentence denies it. This also holds a
  "Yes" whose only negation is the customer's own words ("是的，…用不上，能退。" beside "已开封的
  土壤…不能退货"). It refuses some right denials too, whose case is in the customer's words alone
  ("No, the guarantee does not cover the chewed calathea" beside "… damage caused by pets"): the
  quotes then stand (docs/quality.md, twenty-first round).
- **Unknown**: an answer without a negation must not name what the customer named and the knowledge
  never does: "是的，Lumen & Leaf 购买的沙发自签收之日起保修 1 年。" to "你们卖沙发吗？", beside the lamps'
  warranty, where no passage says 沙发 (words as BM25 makes them: `KnowledgeIndex.names`). "Yes, you
  can return the opened blender" stays, where a passage names blenders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatbot.language import detect_language
from collections.abc import Callable

from chatbot.lexical import HAN_RUN, latin_words, tokenize

_EN_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "thousand": 1000, "half": 0.5,
}
_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
# A duration's unit, as (kind, multiplier): days and weeks in days, months and years in months.
_UNITS = {
    "day": ("day", 1), "days": ("day", 1), "week": ("day", 7), "weeks": ("day", 7), "fortnight": ("day", 14),
    "month": ("month", 1), "months": ("month", 1), "year": ("month", 12), "years": ("month", 12),
    "hour": ("hour", 1), "hours": ("hour", 1), "minute": ("minute", 1), "minutes": ("minute", 1),
    "天": ("day", 1), "日": ("day", 1), "周": ("day", 7), "星期": ("day", 7), "个星期": ("day", 7), "个月": ("month", 1), "月": ("month", 1),
    "年": ("month", 12), "小时": ("hour", 1), "个小时": ("hour", 1), "分钟": ("minute", 1), "个工作日": ("workday", 1), "工作日": ("workday", 1),
    "business day": ("workday", 1), "business days": ("workday", 1), "working day": ("workday", 1), "working days": ("workday", 1),
}
_EN_UNIT = "|".join(sorted((u for u in _UNITS if u.isascii()), key=len, reverse=True))
_ZH_UNIT = "|".join(sorted((u for u in _UNITS if not u.isascii()), key=len, reverse=True))
_NUMBER_WORD = "|".join(sorted(_EN_NUMBERS, key=len, reverse=True))
_ZH_NUMERAL = "[零〇一二两三四五六七八九十百千万]+"
# Chinese numerals count only before a measure word (一下, 统一 are not numbers).
_ZH_MEASURE = f"(?:{_ZH_UNIT}|元|块|个|件|次|%|折|份|张|位|公斤|克|米|厘米|号)"
_QUANTITY = re.compile(
    rf"(?P<digits>\d+(?:[.,]\d+)*)\s*(?P<pct>%|percent)?\s*(?:-|‑)?\s*(?P<unit>{_EN_UNIT}|{_ZH_UNIT})?(?![a-z])"
    rf"|(?<![a-z])(?P<word>{_NUMBER_WORD})(?:[\s-]+(?P<word2>one|two|three|four|five|six|seven|eight|nine))?(?![a-z])\s*(?:-\s*)?(?P<wunit>{_EN_UNIT})?(?![a-z])"
    rf"|(?P<zh>{_ZH_NUMERAL})(?=\s*{_ZH_MEASURE})(?P<zunit>{_ZH_UNIT})?",
    re.IGNORECASE,
)

_EN_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|cannot|without)\b|n't\b", re.IGNORECASE)
_ZH_NEGATION = re.compile(r"不|没有|没|无法|无须|无需|禁止|未")
_EN_CONDITIONS = ("only", "unless", "except", "unopened", "opened", "unused", "used", "sealed", "damaged", "faulty", "free", "full")
_ZH_CONDITIONS = ("仅", "只有", "只能", "除非", "除了", "未拆封", "已拆封", "拆封后", "未使用", "已使用", "免费", "全额")
_EN_YES_NO = re.compile(r"^\W*(?:(?:and|so|ok|okay|also|then|but|great|thanks|thank you)\W+)*(?:can|could|is|isn't|are|aren't|do|does|doesn't|did|will|would|should|may|might|has|have|was|were|am|shall|must)\b", re.IGNORECASE)
_ZH_YES_NO = re.compile(r"吗\s*[？?。]?\s*$|能不能|可不可以|是不是|有没有|会不会|要不要|可否|能否|是否")
# The verdict an answer may open with (`content_units` leaves it out: an answer of these alone says nothing).
_VERDICT_WORDS = "yes|no|not|是的|是|否|对|能|可以|不可以|不能|不是|没有|有的|好的|好"
_VERDICT = re.compile(rf"^(?:\s*(?:{_VERDICT_WORDS})(?![a-z])[\s,，.。!！;；:：]*)+", re.IGNORECASE)
# Where a sentence ends: ?, !, 。, ！, ？ or a full stop before a space (not "U.S." or "2.5 m").
_CLAUSE_END = re.compile(r"(?<=[?!。！？])\s*|(?<=\.)\s+")
_YES = re.compile(r"^\s*(?:yes\b|是|可以|能|有的|对)", re.IGNORECASE)
# A verdict standing as a word of its own (before a comma or a stop), and which way it goes.
_WHOLE_VERDICT = re.compile(rf"(?<![a-z])({_VERDICT_WORDS})(?=\s*[,，.。!！;；])", re.IGNORECASE)
_NO_VERDICTS = {"no", "not", "否", "不可以", "不能", "不是", "没有"}


def _verdicts_disagree(answer: str) -> bool:
    opening = _VERDICT.match(answer)
    ways = {w.lower() in _NO_VERDICTS for w in _WHOLE_VERDICT.findall(opening.group())} if opening else set()
    return len(ways) == 2


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None  # a duration's kind (`_UNITS`), "%" or None


def _zh_value(text: str) -> float | None:
    """二十五 → 25, 两 → 2, 十四 → 14, 一百 → 100; None for what does not parse."""
    total, digit = 0, None
    for char in text:
        if char in _ZH_DIGITS:
            digit = _ZH_DIGITS[char]
        elif char in _ZH_UNITS:
            total += (1 if digit is None else digit) * _ZH_UNITS[char]
            digit = None
        else:
            return None
    return float(total + (digit or 0))


def quantities(text: str) -> list[Quantity]:
    """The numbers of `text` with their units, durations normalised (`_UNITS`)."""
    found = []
    for m in _QUANTITY.finditer(text):
        unit = None
        if m.group("digits"):
            raw = m.group("digits")
            raw = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw) else raw.replace(",", ".")
            try:
                value = float(raw)
            except ValueError:
                continue
            unit = "%" if m.group("pct") else m.group("unit")
        elif m.group("word"):
            value = float(_EN_NUMBERS[m.group("word").lower()])
            if m.group("word2"):
                value += _EN_NUMBERS[m.group("word2").lower()]
            unit = m.group("wunit")
        else:
            parsed = _zh_value(m.group("zh"))
            if parsed is None:
                continue
            value, unit = parsed, m.group("zunit")
        if unit and unit != "%":
            kind, times = _UNITS[unit.lower()]
            value, unit = value * times, kind
        found.append(Quantity(value, unit))
    return found


def _unsupported_quantity(answer: str, evidence: str) -> bool:
    """Whether a quantity of `answer` is not in `evidence`: with its unit, or as a bare value."""
    known = quantities(evidence)
    values = {q.value for q in known}
    with_units = {(q.value, q.unit) for q in known}
    return any(
        q.value not in values if q.unit is None else (q.value, q.unit) not in with_units and not (q.unit == "%" and q.value in values)
        for q in quantities(answer)
    )


def _words(text: str, words: tuple[str, ...]) -> set[str]:
    return {w for w in words if re.search(rf"(?<![a-z]){w}(?![a-z])", text, re.IGNORECASE)}


def _negated(text: str) -> bool:
    return bool(_EN_NEGATION.search(text) or _ZH_NEGATION.search(text))


_A_NOT_A = re.compile(r"(\w)[不没]\1")  # 能不能, 是不是, 有没有: a question's form, not a negation


def same_case(question: str, entry: str, entry_question: str) -> bool:
    """Whether a curated FAQ entry (`entry`: its question and answer; `entry_question` alone) is
    about the customer's case in `question`: both questions negated or neither ("包装都没拆" is not
    "已拆封的商品可以退货吗？"), and every condition the customer names ("unopened", "已使用") in
    the entry. Where not, the answer is generated from the evidence and checked, not given verbatim."""
    asked = _A_NOT_A.sub("", question)
    if _negated(asked) != _negated(_A_NOT_A.sub("", entry_question)):
        return False
    named = _words(asked, _EN_CONDITIONS) | {w for w in _ZH_CONDITIONS if w in asked}
    return named <= (_words(entry, _EN_CONDITIONS) | {w for w in _ZH_CONDITIONS if w in entry})


# Whether an item was opened: the condition a return turns on. The customer says it in their own
# words ("I never opened it", "拆开摆了二十天"); a policy sentence in the business's ("Unopened items",
# "已拆封的商品"). `opened_case` reads either; a sentence about the other case is not evidence for theirs.
_EN_UNOPENED = re.compile(r"\bunopened\b|\b(?:not|never|n't|haven't|hasn't|hadn't|wasn't|isn't)\s+(?:\w+\s+){0,2}?opened\b|\bstill\s+(?:sealed|shrink-wrapped|in\s+(?:its|the)\s+(?:original\s+)?(?:packaging|box))", re.IGNORECASE)
_EN_OPENED = re.compile(r"(?<!un)\bopened\b", re.IGNORECASE)
_ZH_UNOPENED = re.compile(r"未拆封|未开封|没拆|没有拆|没开封|没有开封|原封")
_ZH_OPENED = re.compile(r"拆封|已开封|开封了|拆开|拆了|已经拆")


def opened_case(text: str) -> str | None:
    """"unopened" or "opened" where `text` names one of the two cases and not the other, else None."""
    unopened = bool(_EN_UNOPENED.search(text) or _ZH_UNOPENED.search(text))
    opened = bool(_EN_OPENED.search(_EN_UNOPENED.sub("", text)) or _ZH_OPENED.search(_ZH_UNOPENED.sub("", text)))
    return None if unopened == opened else ("unopened" if unopened else "opened")


def is_yes_no(question: str) -> bool:
    """Whether `question` asks for a yes or a no ("Can I return it?", "可以退吗？"), also after a
    sentence that sets the case ("My basket was $55. Do I still get free delivery?")."""
    def asks(text: str) -> bool:
        return bool(_EN_YES_NO.search(text) or _ZH_YES_NO.search(text.strip()))

    parts = [p for p in _CLAUSE_END.split(question) if p.strip()] or [question]
    return asks(question) or any(asks(p) for p in parts if p.rstrip().endswith(("?", "？")) or p is parts[-1])


def content_units(text: str) -> set[str]:
    """What `text` says beyond an opening verdict, as comparable units: English words as BM25 makes
    them (stemmed, stop words dropped), and for Chinese the character pairs of each run of Han
    characters (a single character alone). Pairs, not jieba's words: "开发票" and "专用发票" share
    "发票", where a segmenter may cut them into unrelated words."""
    text = _VERDICT.sub("", text)
    units = set(latin_words(text))
    for run in HAN_RUN.findall(text):
        units.update({run} if len(run) == 1 else {run[i : i + 2] for i in range(len(run) - 1)})
    return units


def check(answer: str, evidence: list[str], question: str = "", titles: tuple[str, ...] = (), known: Callable[[str], bool] | None = None) -> list[str]:
    """Why `answer` to `question` may not be shown beside `evidence` (its sentences, best first,
    from passages with these `titles`; `known`: whether the knowledge names a BM25 word anywhere):
    a list of failed checks ("language": written in another language than the evidence, so its
    words cannot be compared; "content": a bare verdict; "quantity", "negation", "condition",
    "verdict": against the best sentence's negation, two that disagree, or one opening the answer
    to a question that asks for none; "echo", "unknown", "denial"), empty when all pass."""
    joined = " ".join(evidence)
    if detect_language(answer) != detect_language(joined):
        return ["language"]
    said = content_units(answer)
    if not said:
        return ["content"]
    failures = ["quantity"] if _unsupported_quantity(answer, joined) else []
    if _negated(answer) and not _negated(joined):
        failures.append("negation")
    missing = (_words(answer, _EN_CONDITIONS) - _words(joined, _EN_CONDITIONS)) | {w for w in _ZH_CONDITIONS if w in answer and w not in joined}
    if missing:
        failures.append("condition")
    if (evidence and _YES.search(answer) and _negated(evidence[0]) and not _negated(answer)) or _verdicts_disagree(answer) or (
            question and not is_yes_no(question) and _WHOLE_VERDICT.match(answer.lstrip())):
        failures.append("verdict")  # ...or a verdict to a question that asks for none ("How long is it?" "Yes, 1 year.")
    if question:  # a denial is held by the negation check instead; a question asked back never passes
        source = " ".join((joined, *titles))  # "the Acorn" is named by its passage's title
        source_units, question_units = content_units(source), content_units(question)
        from_evidence = {u for u in said if _found(u, source, source_units)}
        from_question = {u for u in said - from_evidence if _found(u, question, question_units)}
        if ("?" in answer or "？" in answer) or (not _negated(answer) and len(from_question) > len(from_evidence)):
            failures.append("echo")
        if known is not None and not _negated(answer) and _unknown(answer, question, source, known):
            failures.append("unknown")
    if _negated(answer) and "negation" not in failures and not _denial_rests_on_one_sentence(said, evidence, titles):
        failures.append("denial")
    return failures


def _denial_rests_on_one_sentence(said: set[str], evidence: list[str], titles: tuple[str, ...]) -> bool:
    """Whether a negated answer (its `content_units`: `said`) is what one negated evidence sentence
    says: at least half its units in that sentence or the titles. "No, the warranty does not cover a
    toaster that stopped heating" beside "The warranty does not cover accidental damage …" and
    "… toasters … have a 2-year warranty" takes its "not" from one sentence and its toaster from
    another: it denies what no sentence denies."""
    named = " ".join(titles)
    for sentence in evidence:
        if _negated(_A_NOT_A.sub("", sentence)):
            text = f"{sentence} {named}"
            units = content_units(text)
            if 2 * sum(_found(u, text, units) for u in said) >= len(said):
                return True
    return False


def _unknown(answer: str, question: str, source: str, known: Callable[[str], bool]) -> bool:
    """Whether `answer` has a word of `question` (two characters or more in Chinese) that neither
    `source` (the evidence and its titles) nor anything `known` to the knowledge has."""
    asked, given = set(tokenize(question)), set(tokenize(source))
    return any(w in asked and w not in given and not known(w) for w in tokenize(_VERDICT.sub("", answer)) if not HAN_RUN.fullmatch(w) or len(w) > 1)


def _found(unit: str, text: str, units: set[str]) -> bool:
    """Whether a unit of `content_units` is in `text` (whose units are `units`): an English word among
    its words, Chinese characters anywhere in it (a lone "退" is in "退货")."""
    return unit in text if HAN_RUN.match(unit) else unit in units
