"""Where the BPE merges come from: the merges file format, the official CLIP vocabulary.

A merges file (OpenAI's `bpe_simple_vocab_16e6.txt.gz`, or one `write_merges` made) is text,
optionally gzipped: a header line, then one merge per line, two symbols separated by a space,
in the order they were learned (line k+1 is the merge of rank k):

    "bpe_simple_vocab_16e6.txt#version: 0.2
    i n
    t h
    ...

The official file holds 262,144 merges, but CLIP reads only the first 48,894 of them, so that
its vocabulary has 49,152 + 256 = 49,408 tokens: 256 bytes, 256 bytes ending a word, 48,894
merges and 2 special tokens (Radford et al. 2021, sec. 2.4; the count is `OFFICIAL_NUM_MERGES`).

The official file ships inside the `open_clip_torch` package; `find_official_vocab` looks there
without importing open_clip. `download_official_vocab` fetches it from OpenAI's repository and
checks its SHA-256 (minildm never downloads on its own: call it yourself when you are online).
"""

import gzip
import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

OFFICIAL_VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
OFFICIAL_VOCAB_URL = "https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz"
OFFICIAL_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# 49,408 tokens = 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 special tokens
OFFICIAL_NUM_MERGES = 49152 - 256 - 2
CACHE_DIR = Path(os.environ.get("MINILDM_CACHE", Path.home() / ".cache" / "minildm"))


def read_merges(path: str | Path, max_merges: int = OFFICIAL_NUM_MERGES) -> list[tuple[str, str]]:
    """The first `max_merges` merges of a merges file (gzipped if its name ends in .gz)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no merges file at {path}: pass a file written by write_merges or the official {OFFICIAL_VOCAB_NAME}"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:]  # line 0 is the header
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a merges file: byte {err.start} is not UTF-8 text ({err.reason})") from err
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path} is not a readable merges file ({type(err).__name__}: {err})") from err
    merges = []
    for line_number, line in enumerate(lines[:max_merges], start=2):
        if not line:
            continue
        symbols = line.split()
        if len(symbols) != 2:
            raise ValueError(f"{path}:{line_number}: a merge is two symbols separated by a space, got {line!r}")
        merges.append((symbols[0], symbols[1]))
    return merges


def write_merges(merges: list[tuple[str, str]], path: str | Path) -> Path:
    """Write merges in the CLIP file format (gzipped if `path` ends in .gz); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "#version: 0.2 (minildm BPETrainer)\n" + "".join(f"{a} {b}\n" for a, b in merges)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_official_vocab() -> Path | None:
    """The official merges file inside an installed open_clip_torch, or in minildm's cache."""
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing it
    candidates = [CACHE_DIR / OFFICIAL_VOCAB_NAME]
    if spec is not None and spec.submodule_search_locations:
        candidates = [Path(p) / OFFICIAL_VOCAB_NAME for p in spec.submodule_search_locations] + candidates
    return next((p for p in candidates if p.is_file()), None)


def download_official_vocab(
    dest: str | Path = CACHE_DIR / OFFICIAL_VOCAB_NAME,
    url: str = OFFICIAL_VOCAB_URL,
    sha256: str = OFFICIAL_VOCAB_SHA256,
) -> Path:
    """Download the official merges file to `dest` and verify its SHA-256 before keeping it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp, urllib.request.urlopen(url) as response:
        shutil.copyfileobj(response, tmp)
    got = sha256_of(tmp.name)
    if got != sha256:
        os.unlink(tmp.name)
        raise ValueError(f"{url} has SHA-256 {got}, expected {sha256}: refusing to use it")
    os.replace(tmp.name, dest)
    return dest


def official_vocab_path(download: bool = False) -> Path:
    """The official merges file: found locally, else downloaded if `download`, else a clear error."""
    path = find_official_vocab()
    if path is not None:
        return path
    if download:
        return download_official_vocab()
    raise FileNotFoundError(
        f"the official CLIP vocabulary {OFFICIAL_VOCAB_NAME} was not found: looked inside the "
        f"open_clip_torch package and in {CACHE_DIR}. Get it with `pip install open_clip_torch`, "
        f"or online with minildm.text.vocab.download_official_vocab() (from {OFFICIAL_VOCAB_URL}), "
        "or pass vocab_path= to a file you have, or train your own with minildm.text.train_bpe."
    )
