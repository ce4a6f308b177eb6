"""Integration fixtures: the real default profile (packaged LM and embedder, real FAISS index built
from `knowledge/`), with all state in a temporary data dir."""

from __future__ import annotations

import os

import pytest

from chatbot.config import load_settings


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def default_settings(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    return load_settings("default", environ=env, overrides={"data_dir": str(data_dir)})


@pytest.fixture(scope="session")
def manager(default_settings):
    from chatbot.runtime import build_dialogue_manager

    return build_dialogue_manager(default_settings)


@pytest.fixture
def cli_env(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    return env | {"CHATBOT_DATA_DIR": str(data_dir)}
