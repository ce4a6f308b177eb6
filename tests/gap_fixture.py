"""Stored conversations with five planted knowledge gaps (English and Chinese) and noise, for the
gap topics' tests: what customers of the shop in `knowledge/` ask that it does not answer."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

PLANTED = {
    "gift wrapping": [
        "Do you offer gift wrapping?", "Can you gift wrap my order?", "Is gift wrap available at checkout?",
        "How much does gift wrapping cost?", "Could the lamp be wrapped as a present?", "Do you wrap presents for customers?",
        "Is there a gift-wrap option for orders?", "Can my parcel arrive gift wrapped?", "I'd like it wrapped in gift paper, is that possible?",
        "Can you gift wrap a birthday present for me?", "Do you do gift wrapping with a ribbon?", "Is gift wrapping free?",
        "Can I choose gift wrapping paper?", "Will you wrap my order as a gift?",
    ],
    "student discount": [
        "Do you have a student discount?", "Is there a discount for students?", "Can students get money off?",
        "I'm a university student, do I get a discount?", "Do you offer student pricing?", "Any student deals?",
        "How do I get the student discount?", "Do you accept student ID for a discount?", "Is there a student promo code?",
        "Are there discounts for college students?", "Do students get a cheaper price?", "Student discount available?",
        "Can I use my student card for a discount?", "Is there money off for students at university?",
    ],
    "assembly service": [
        "Can your team assemble the bookshelf for me?", "Do you offer furniture assembly?", "Will the delivery driver assemble my shelf?",
        "Is there an assembly service?", "Can someone put the shelves together when they deliver?", "Do you assemble furniture at home?",
        "How much does assembly cost?", "Can I book assembly with my order?", "Does delivery include assembly of the bookcase?",
        "Do you send a technician to assemble furniture?", "Can you build the bookshelf on delivery?", "Is home assembly available?",
        "Will you put together the shelving unit for me?", "Can I pay extra for assembly?",
    ],
    "线下门店": [
        "你们有线下门店吗？", "有没有实体店可以去看看？", "你们的门店在哪里？", "可以去店里看灯具实物吗？", "附近有你们的实体店吗？",
        "有没有展厅可以参观？", "线下店几点开门？", "我想去实体店买，有吗？", "你们在上海有门店吗？", "能到店自提和看货吗？",
        "实体店地址是什么？", "有没有线下体验店？", "门店可以试灯吗？", "你们有没有开实体店？",
    ],
    "植物订阅": [
        "可以开通每月寄一盆植物的订阅服务吗？", "你们有植物订阅吗？", "有没有每月送花草的会员服务？", "能不能按月订购绿植？",
        "植物订阅盒多少钱一个月？", "有按月配送植物的套餐吗？", "我想订每月一盆的绿植，可以吗？", "你们提供绿植包月服务吗？",
        "每个月自动寄植物的订阅怎么开？", "有没有植物盲盒订阅？", "可以订阅季节性植物每月配送吗？", "月度植物订阅能随时取消吗？",
        "绿植订阅服务有吗？", "每月寄一盆植物的订阅怎么收费？",
    ],
}
NOISE = [
    "What is the capital of Peru?", "Who painted the Mona Lisa?", "Can you recommend a good film tonight?", "How tall is Mount Everest?",
    "What's 17 times 23?", "Translate 'good morning' into French.", "Is it going to snow in Oslo tomorrow?", "Who won the 1998 World Cup?",
    "How do I bake sourdough bread?", "What's the best phone plan for travel?", "How do I renew my passport?", "Can you write me a haiku?",
    "What time is it in Tokyo?", "How many legs does a spider have?", "Which bank has the best savings rate?", "How do I fix a flat bike tyre?",
    "明天北京天气怎么样？", "给我讲个笑话吧。", "长城有多长？", "怎么办理护照？", "推荐一部好看的电视剧。", "一加一等于几？",
    "附近哪家火锅店好吃？", "怎么学好英语？", "股票现在能买吗？", "猫能吃巧克力吗？", "高铁票怎么退？", "怎么做红烧肉？",
]
ANSWERED = [
    "How long does standard delivery take?", "Can I return an opened item?", "What warranty do lamps have?", "Do you deliver to PO boxes?",
    "How do Leaf Points work?", "Can I pay in instalments?", "How do I use a discount code?", "When will my order be dispatched?",
    "标准配送要多久？", "已拆封的商品可以退货吗？", "灯具保修多久？", "可以分期付款吗？", "怎么使用优惠码？", "我的订单什么时候发货？",
]


def stored_turns(store, now: datetime, per_topic: int = 10, seed: int = 0, first: int = 0, noise: bool = True) -> dict[str, list[int]]:
    """Store conversations: `per_topic` questions of each planted topic (from the `first`-th, each
    refused, some then thumbed down or handed to a person who replies) and, with `noise`, every
    noise question refused once and answered questions; each a conversation of its own, spread over the last 20
    days. Returns the planted questions' message ids by topic."""
    rng = random.Random(seed)
    planted: dict[str, list[int]] = {}

    def conversation(question: str, mode: str, created: datetime, down: bool = False, handoff: bool = False) -> int:
        c = store.create_conversation("test-site", f"visitor-{rng.random():.12f}")
        asked = store.add_message(c.id, "user", question, lang="zh" if any("\u4e00" <= ch <= "\u9fff" for ch in question) else "en")
        answer = store.add_message(c.id, "assistant", "(the reply)", mode=mode)
        feedback = store.add_feedback(c.id, answer.id, -1, "not what I asked") if down else None
        if handoff:
            store.add_message(c.id, "user", "I want to talk to a person")
            store.set_status(c.id, "handoff")
            store.add_message(c.id, "assistant", "(handoff notice)", mode="handoff")
            store.add_message(c.id, "agent", "We can do that for you: reply with your order number.")
        _set_created(store, created, conversation=c.id, messages=(asked.id, answer.id), feedback=feedback.id if feedback else None)  # over 20 days
        return asked.id

    for topic, questions in PLANTED.items():
        for n, question in enumerate(questions[first : first + per_topic]):
            created = now - timedelta(days=rng.uniform(0, 20))
            planted.setdefault(topic, []).append(conversation(question, "abstain", created, down=n % 4 == 1, handoff=n % 5 == 2))
    for question in NOISE if noise else []:
        conversation(question, "abstain", now - timedelta(days=rng.uniform(0, 20)))
    for question in ANSWERED * 4 if noise else []:
        conversation(question, rng.choice(["faq", "generate"]), now - timedelta(days=rng.uniform(0, 20)))
    return planted


def _set_created(store, created: datetime, conversation: str, messages: tuple[int, ...], feedback: int | None) -> None:
    from sqlalchemy import update

    from chatbot.store import Conversation, Feedback, Message

    with store._session() as s:
        s.execute(update(Conversation).where(Conversation.id == conversation).values(created=created))
        s.execute(update(Message).where(Message.id.in_(messages)).values(created=created))
        if feedback is not None:
            s.execute(update(Feedback).where(Feedback.id == feedback).values(created=created))
