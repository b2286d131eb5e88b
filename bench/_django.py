"""Django set-up for the benchmarks (they read settings through the provider layer)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup() -> None:
    """Configure Django with the project's settings, as manage.py does for development."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
