"""The exception tree. Only `UserError` text is ever shown to a customer; anything else is logged
and replaced by an apology.

    ChatbotError
    ├── UserError        a message the user can act on (too long, empty)
    ├── ConfigError      a bad setting: names the key and what is allowed
    ├── ModelLoadError   a model that cannot load: says why and what to do
    ├── ModelBusyError   the LM is at its request limit: try again shortly
    ├── ModelServerError an OpenAI-compatible LM server that is down or failing: says which and why
    └── KnowledgeIndexError  the knowledge index is missing or unusable: says what to run
"""


class ChatbotError(Exception):
    """Base of every error Kefu raises on purpose."""


class UserError(ChatbotError):
    """Bad input from a user; the text is safe and useful to show them. `status` is the HTTP status
    the API answers it with (422: not valid; 413: too long; 429: too many)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(ChatbotError):
    """A bad configuration key or value; the text names the key and what is allowed."""


class ModelLoadError(ChatbotError):
    """A model (LM or embedder) that cannot be loaded; the text says why and what to do."""


class ModelBusyError(ChatbotError):
    """The LM has as many requests in flight as it is allowed; this one is refused, not queued."""


class ModelServerError(ChatbotError):
    """An OpenAI-compatible LM server could not be reached or answered with an error."""


class KnowledgeIndexError(ChatbotError):
    """The knowledge index is missing, stale beyond repair, or unreadable."""
