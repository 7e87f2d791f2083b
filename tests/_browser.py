"""The headless Chromium the browser tests drive through Playwright (the system's own
browser: Playwright's bundled browsers are not needed)."""
from __future__ import annotations

import os
import shutil

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def chromium() -> str | None:
    """The Chromium named by ``$BPNN_CHROMIUM``, or the first one on the PATH; None without one."""
    for name in (os.environ.get("BPNN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        path = name and shutil.which(name)
        if path:
            return path
    return None
