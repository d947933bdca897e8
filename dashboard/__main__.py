"""``python -m dashboard [streamlit options]``: serve the dashboard (``make dashboard``).

It listens on ``STELLAR_DASHBOARD_ADDRESS`` (127.0.0.1 unless set: the dashboard can edit and
forget memories, so it is not offered to the network by default) and
``STELLAR_DASHBOARD_PORT``; further options go to ``streamlit run`` as they are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stellar_core import Settings


def command(extra: list[str]) -> list[str]:
    """The ``streamlit run`` command line."""
    s = Settings()
    return [
        sys.executable, "-m", "streamlit", "run", str(Path(__file__).with_name("app.py")),
        "--server.address", s.dashboard_address, "--server.port", str(s.dashboard_port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer", *extra,
    ]  # fmt: skip


if __name__ == "__main__":
    argv = command(sys.argv[1:])
    os.execv(argv[0], argv)
