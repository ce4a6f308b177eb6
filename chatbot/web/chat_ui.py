"""The customer chat page (Gradio). It only translates: a message and the session's history go to
`DialogueManager.respond`, the streamed text and the sources come back into the chat.

Per-session state is the conversation in `gr.State` (questions and clean answers, without the
sources footer) and its id in the store, where every turn is kept; nothing per user lives on the
shared manager.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable

import gradio as gr

from chatbot.dialogue import DialogueManager, Reply
from chatbot.errors import UserError
from chatbot.handoff import asks_for_a_person, hand_off
from chatbot.language import detect_language
from chatbot.store import Store
from chatbot.web.security import RateLimiter

log = logging.getLogger(__name__)

EXAMPLES = [
    "How long does standard delivery take?",
    "Can I return an item I have already opened?",
    "What payment methods do you accept?",
    "标准快递多久能送到？",
    "已经拆封的商品可以退货吗？",
    "如何重置密码？",
]
_AGENT_LABEL = "Agent · 客服"
CHAT_PAGE = "chat-page"  # the store's site key and visitor for conversations on this page
_SOURCES_LABEL = {"en": "Sources", "zh": "来源"}
_MODE_NOTE = {
    ("faq", "en"): "curated answer",
    ("faq", "zh"): "标准答案",
    ("generate", "en"): "quoted from the passages below, the last sentence generated and checked against them",
    ("generate", "zh"): "引自以下资料，最后一句为生成并已与资料核对",
    ("quoted", "en"): "quoted word for word from the passages below",
    ("quoted", "zh"): "逐字引自以下资料",
}


def as_text(text: str) -> str:
    """Text anyone wrote (the customer, the knowledge, the model), shown as text: markup in it is
    displayed, never rendered."""
    return html.escape(text, quote=False)


def sources_footer(reply: Reply) -> str:
    """The Markdown shown under an answer: how it was made and the passages it came from."""
    if not reply.sources:
        return ""
    # quoted alone: a generated answer whose paraphrase was not shown, or a refused request's quote
    kind = "quoted" if (reply.mode == "generate" and reply.checks) or reply.mode == "abstain" else reply.mode
    note = _MODE_NOTE.get((kind, reply.lang))
    lines = [f"\n\n**{_SOURCES_LABEL.get(reply.lang, 'Sources')}**" + (f" ({note})" if note else "")]
    for n, source in enumerate(reply.sources, 1):
        heading = f" — {source.heading}" if source.heading and source.heading != source.title else ""
        page = f" p. {source.page}" if source.page else ""
        lines.append(f"{n}. {as_text(source.title + heading)} · `{source.source}`{page} · {source.score:.2f}")
        if source.quote:  # the quoted words highlighted in their passage
            start, end = source.quote
            before, after = source.text[max(0, start - 160) : start], source.text[end : end + 160]
            lines.append(f"   > {'…' if start > 160 else ''}{_one_line(before)}<mark>{_one_line(source.text[start:end])}</mark>{_one_line(after)}{'…' if end + 160 < len(source.text) else ''}")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return as_text(re.sub(r"\s+", " ", text))


def answer_markdown(reply: Reply) -> str:
    """A finished reply as the chat shows it: a generated answer's opening quote as a block quote,
    then the rest, then the sources."""
    text = reply.text
    if reply.quote and text.startswith(reply.quote):
        rest = text[len(reply.quote) :].strip()
        return f"> {as_text(reply.quote)}" + (f"\n\n{as_text(rest)}" if rest else "") + sources_footer(reply)
    return as_text(text) + sources_footer(reply)


def build_chat_ui(manager: DialogueManager, store: Store, concurrency_limit: int, before_turn: Callable[[], object] = lambda: None) -> gr.Blocks:
    """The chat page. Every turn is stored (site key `chat-page`), so the admin page lists it.
    `concurrency_limit` chat events run at once (Gradio's default is 1); `before_turn` runs before
    each answer (moving onto a new index version). A customer who asks for a person (button or
    words) is handed off: the bot stays quiet and the admin's replies appear, polled every 3 s.
    Messages are limited per client address (`security.address_per_minute`) and per conversation
    (`security.visitor_per_minute`), with a polite refusal in the customer's language."""

    security = manager.settings.security
    per_address = RateLimiter(security.address_per_minute, security.limits_storage, "chat-address")
    per_conversation = RateLimiter(security.visitor_per_minute, security.limits_storage, "chat-conversation")

    def record(stored: str, role: str, text: str, **fields) -> str:
        stored = stored or store.create_conversation(CHAT_PAGE, CHAT_PAGE).id
        if text.strip():
            store.add_message(stored, role, text, **fields)
        return stored

    def handed_off(chat: list[dict], stored: str, lang: str) -> tuple[list[dict], int]:
        conversation = store.conversation(stored)
        assert conversation is not None
        notice = hand_off(store, manager.prompts, manager.settings, conversation, lang)
        return [*chat, {"role": "assistant", "content": as_text(notice.content)}], notice.id

    def too_fast(request: gr.Request | None, stored: str) -> float:
        """Seconds to wait, or 0: the same limits per address and per conversation as the API's."""
        address = request.client.host if request is not None and request.client else "?"
        return per_address.check(address) or (per_conversation.check(stored) if stored else 0.0)

    def respond(message: str, chat: list[dict], conversation: list[dict], stored: str, seen: int, request: gr.Request):
        wait = too_fast(request, stored)
        if wait:  # refused before anything is read or stored; the text stays in the box
            text = manager.prompts.render("too_fast", lang=detect_language(message or ""), wait=max(1, round(wait)))
            yield message, [*chat, {"role": "assistant", "content": text}], conversation, stored, seen, gr.skip()
            return
        state = store.conversation(stored) if stored else None
        with_person = state is not None and state.status == "handoff"
        try:  # the turn limit is the bot's: a customer handed off at it can still write to the person
            question = manager.check(message, [] if with_person else conversation)
        except UserError as e:
            # Refused (empty, too long, too many turns): not shown as sent and not stored, as in the
            # API; the text stays in the box to be shortened, and the chat says why, in a bubble of
            # its own (the Chatbot does not group consecutive replies).
            yield message if (message or "").strip() else "", [*chat, {"role": "assistant", "content": str(e)}], conversation, stored, seen, gr.skip()
            return
        chat = [*chat, {"role": "user", "content": as_text(message)}]  # what they typed; stored and answered masked
        lang = detect_language(question)
        stored = record(stored, "user", question, lang=lang)
        if with_person:  # a person has it: the bot stays quiet
            yield "", chat, conversation, stored, seen, gr.Timer(active=True)
            return
        if asks_for_a_person(question):
            chat, seen = handed_off(chat, stored, lang)
            yield "", chat, conversation, stored, seen, gr.Timer(active=True)
            return
        try:
            before_turn()
            reply = manager.respond(message, conversation)
        except Exception:
            log.exception("answering failed")
            text = manager.prompts.render("error", lang=lang)
            yield message, [*chat, {"role": "assistant", "content": text}], conversation, stored, seen, gr.skip()
            return
        answer = {"role": "assistant", "content": ""}
        chat.append(answer)
        for piece in reply:
            answer["content"] += as_text(piece)
            yield "", chat, conversation, stored, seen, gr.skip()
        answer["content"] = answer_markdown(reply)
        conversation = [*conversation, {"role": "user", "content": question}, {"role": "assistant", "content": reply.text}]
        stored = record(stored, "assistant", reply.text, mode=reply.mode, lang=reply.lang, sources=[s.as_dict() for s in reply.sources], timings=reply.timings)
        yield "", chat, conversation, stored, seen, gr.skip()

    def ask_for_person(chat: list[dict], conversation: list[dict], stored: str, seen: int):
        stored = record(stored, "user", "")
        state = store.conversation(stored)
        if state is not None and state.status == "handoff":
            return chat, stored, seen, gr.Timer(active=True)
        last = next((m["content"] for m in reversed(conversation) if m["role"] == "user"), "")
        chat, seen = handed_off(chat, stored, detect_language(last))
        return chat, stored, seen, gr.Timer(active=True)

    def poll(chat: list[dict], stored: str, seen: int):
        """The admin's new replies; the timer stops once the conversation is handed back."""
        state = store.conversation(stored) if stored else None
        if state is None:
            return gr.skip(), seen, gr.Timer(active=False)
        new = store.messages(stored, after=seen)
        replies = [{"role": "assistant", "content": f"**{_AGENT_LABEL}:** {as_text(m.content)}"} for m in new if m.role == "agent"]
        seen = max([seen, *(m.id for m in new)])
        return ([*chat, *replies] if replies else gr.skip()), seen, gr.Timer(active=state.status == "handoff")

    with gr.Blocks(title="Kefu · customer service") as ui:
        gr.Markdown(f"## {manager.business} · customer service / 客服\nAsk in English or Chinese. 可以用中文或英文提问。")
        chat = gr.Chatbot(label="Chat", height=520, feedback_options=None, buttons=["copy"], group_consecutive_messages=False)
        conversation = gr.State([])
        stored = gr.State("")  # the conversation's id in the store
        seen = gr.State(0)  # the newest stored message shown, for the admin's replies
        timer = gr.Timer(3, active=False)
        with gr.Row():
            box = gr.Textbox(placeholder="Type your question… / 请输入您的问题…", show_label=False, scale=8, max_lines=6, autofocus=True)
            send = gr.Button("Send · 发送", variant="primary", scale=1)
        with gr.Row():
            new = gr.Button("New conversation · 新对话", size="sm")
            person = gr.Button("Talk to a person · 转人工", size="sm")
        gr.Examples(EXAMPLES, inputs=box, label="Examples · 示例问题")
        io = dict(fn=respond, inputs=[box, chat, conversation, stored, seen], outputs=[box, chat, conversation, stored, seen, timer])
        limits = dict(concurrency_limit=concurrency_limit, concurrency_id="chat", show_progress="hidden")
        box.submit(**io, **limits, api_name="chat")
        send.click(**io, **limits, api_visibility="private")
        person.click(ask_for_person, inputs=[chat, conversation, stored, seen], outputs=[chat, stored, seen, timer], api_name="talk_to_a_person")
        timer.tick(poll, inputs=[chat, stored, seen], outputs=[chat, seen, timer], show_progress="hidden", api_visibility="private")
        new.click(lambda: ("", [], [], "", 0, gr.Timer(active=False)), outputs=[box, chat, conversation, stored, seen, timer], api_name="new_conversation")
    return ui
