"""SQLite under a server: keep the write-ahead log between requests.

Connections are not persistent under ASGI (settings.py: conn_max_age=0), so when no other
request is in flight the last connection closes after each one, and SQLite checkpoints and
deletes the WAL on the way out; the next request's first query re-creates it and its commit
pays the sync again (measured: connect 1.4 ms, commit 1.2 ms and close 1.9 ms, against 0.8,
0.1 and 0.2 ms with the WAL kept). One idle connection held by the server process keeps it:
it holds no lock and reads nothing after opening, so checkpoints still run as usual.
"""

from __future__ import annotations

import sqlite3

from django.db import connections

_keeper: sqlite3.Connection | None = None


def sqlite_wal_keep(alias: str = "default") -> None:
    """Hold one idle connection to the database when it is an SQLite file (else nothing)."""
    global _keeper
    connection = connections[alias]
    name = str(connection.settings_dict["NAME"])
    if _keeper is not None or connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    keeper = sqlite3.connect(name, check_same_thread=False)
    keeper.execute("PRAGMA journal_mode=WAL").fetchall()  # as settings' init_command
    keeper.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the WAL
    _keeper = keeper
