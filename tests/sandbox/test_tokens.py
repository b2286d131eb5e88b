"""Offline tiktoken: rank files under tiktoken's cache names; pieces that are valid UTF-8."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import tiktoken

from sandbox import tokens

O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def test_rank_files_are_cached_under_tiktokens_names() -> None:
    folder = tokens.install_rank_files()

    for url in (O200K_URL, CL100K_URL):
        assert (Path(folder) / hashlib.sha1(url.encode()).hexdigest()).is_file()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(folder)


def test_encodings_load_offline_and_count_like_tiktoken() -> None:
    text = "Hello, world! Ünïcödé and 日本語."

    assert tokens.count(text) == len(tiktoken.get_encoding("o200k_base").encode(text))
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokens.count("") == 0


def test_pieces_merge_tokens_that_split_a_character() -> None:
    ids = tokens.encode("𓀀𓀁 ok")
    pieces = tokens.pieces(ids)

    assert "".join(p.text for p in pieces) == "𓀀𓀁 ok"
    assert sum(p.tokens for p in pieces) == len(ids)
    assert len(pieces) < len(ids)
    assert all("\ufffd" not in p.text for p in pieces)


def test_pieces_drop_a_character_cut_in_half_but_count_its_tokens() -> None:
    ids = tokens.encode("ok 𓀀")
    cut = ids[:-1]
    pieces = tokens.pieces(cut)

    text = "".join(p.text for p in pieces)
    assert text.startswith("ok")
    assert "ok 𓀀".startswith(text)
    assert "\ufffd" not in text
    assert sum(p.tokens for p in pieces) == len(cut)
