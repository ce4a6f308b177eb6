"""Load and render the Jinja templates in `prompts/` strictly: a missing variable is an error.

Prompts are data: the system prompt, the grounded user message, and the fixed replies (abstain,
empty or over-long message, apology), each in English and Chinese, chosen by a `lang` variable.
"""

from __future__ import annotations

from pathlib import Path

import jinja2


class Prompts:
    """The templates of one folder, rendered with `StrictUndefined`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def names(self) -> list[str]:
        """The template names, without the `.j2` suffix."""
        return sorted(p.stem for p in self.folder.glob("*.j2"))

    def render(self, name: str, **variables: object) -> str:
        """The rendered template `name` (e.g. `system`), stripped of surrounding whitespace."""
        return self._env.get_template(f"{name}.j2").render(**variables).strip()
