"""Django set-up for the benchmarks (they read settings through the provider layer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup() -> None:
    """Configure Django with the project's settings, as manage.py does for development."""
    # The repository root first, and not bench/: its queue.py would shadow the stdlib's queue.
    sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
