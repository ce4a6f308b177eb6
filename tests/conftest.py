"""Shared fixtures: a small knowledge folder and test-profile settings that keep all state in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.config import Settings, load_settings

FAQ_CSV = """question,answer,category
How long does standard delivery take?,Standard delivery takes 3 to 5 business days.,shipping
Do you ship abroad?,We only ship within the country.,shipping
How do I reset my password?,Click Forgot password on the sign-in page and follow the email link.,account
"""
FAQ_ZH_CSV = """问题,答案,类别
标准快递多久能送到？,标准快递需要3到5个工作日送达。,shipping
如何重置密码？,在登录页面点击忘记密码，然后按照邮件中的链接操作。,account
"""
RETURNS_MD = """# Returns policy

Our returns policy explains how returns work.

## Unopened items

Unopened items can be returned within 30 days for a full refund.

## Opened items

Opened items can be returned within 14 days if undamaged; a 15% restocking fee applies.
"""


@pytest.fixture
def knowledge_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "knowledge"
    (folder / "en").mkdir(parents=True)
    (folder / "zh").mkdir()
    (folder / "en" / "faq.csv").write_text(FAQ_CSV, encoding="utf-8")
    (folder / "zh" / "faq.csv").write_text(FAQ_ZH_CSV, encoding="utf-8")
    (folder / "en" / "returns.md").write_text(RETURNS_MD, encoding="utf-8")
    (folder / "README.md").write_text("# not knowledge\n", encoding="utf-8")
    return folder


@pytest.fixture
def settings(tmp_path: Path, knowledge_dir: Path) -> Settings:
    """The test profile (fakes), with data and knowledge in tmp and nothing from the environment."""
    return load_settings("test", environ={}, overrides={"data_dir": str(tmp_path / "data"), "knowledge_dir": str(knowledge_dir)})
