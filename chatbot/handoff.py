"""Handing a conversation to a person: what counts as asking for one, and the handoff itself
(status, the notice to the customer, the webhook). Shared by the API (widget) and the chat page."""

from __future__ import annotations

import logging
import re
import threading

import httpx

from chatbot.config import Settings
from chatbot.prompts import Prompts
from chatbot.store import Conversation, Message, Store

log = logging.getLogger(__name__)
# A customer asking for a person, in English or Chinese.
HANDOFF_REQUEST = re.compile(
    r"\b(talk|speak|chat|connect me)\b.{0,20}\b(human|person|agent|someone|representative|staff)\b|\b(real|live) (person|agent|human)\b"
    r"|^\s*(human|agent|operator)\s*[.!?]*\s*$|转人工|人工客服|真人|找人工|人工服务",
    re.IGNORECASE,
)


def asks_for_a_person(text: str) -> bool:
    return bool(HANDOFF_REQUEST.search(text))


def hand_off(store: Store, prompts: Prompts, settings: Settings, conversation: Conversation, lang: str) -> Message:
    """Mark the conversation handed off, store the notice the customer sees, send the webhook with
    the customer's last message (as stored: masked)."""
    store.set_status(conversation.id, "handoff")
    asked = [m.content for m in store.messages(conversation.id) if m.role == "user"]
    notice = store.add_message(conversation.id, "assistant", prompts.render("handoff", lang=lang), mode="handoff", lang=lang)
    notify(settings.handoff.webhook_url, settings.handoff.webhook_timeout_s, conversation, asked[-1] if asked else "")
    return notice


def notify(url: str, timeout: float, conversation: Conversation, last_message: str = "") -> None:
    """POST the handoff notice to the webhook, in the background; a failure is logged, never raised."""
    if not url:
        return
    notice = {"event": "handoff", "conversation_id": conversation.id, "site_key": conversation.site_key, "last_message": last_message}

    def send() -> None:
        try:
            httpx.post(url, json=notice, timeout=timeout).raise_for_status()
        except httpx.HTTPError as e:
            log.warning("handoff webhook %s failed: %s", url, e)

    threading.Thread(target=send, name="handoff-webhook", daemon=True).start()
