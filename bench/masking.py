"""How long masking personal data takes (`chatbot/privacy.py`): a typical message, and 100 KB
hostile ones (the test's cases), best of five each, on this machine.

    .venv/bin/python bench/masking.py
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.privacy import Masker  # noqa: E402
from tests.pii import PII_MESSAGE  # noqa: E402
from tests.unit.test_privacy import HOSTILE  # noqa: E402


def best_ms(masker: Masker, text: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        masker.mask(text)
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def main() -> None:
    masker = Masker()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.machine())
    print(f"machine: {cpu}, python {platform.python_version()}")
    typical = "My order 20261203001 has not arrived; call me on 13800138000 or mail jane@example.com."
    print(f"typical message ({len(typical)} chars): {best_ms(masker, typical, 200) * 1000:.0f} µs")
    print(f"the tests' personal-data message ({len(PII_MESSAGE)} chars): {best_ms(masker, PII_MESSAGE, 200) * 1000:.0f} µs")
    for name, text in HOSTILE.items():
        print(f"100 KB hostile, {name}: {best_ms(masker, text[:100_000]):.1f} ms")


if __name__ == "__main__":
    main()
