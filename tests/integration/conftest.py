"""Session fixtures for the end-to-end tests: one SeaweedFS with a hard-key corpus,
one Envoy running the filter in front of it, and a factory for extra Envoys.

The corpus is the point of these tests: every character class that has ever
broken an S3 signer (sub-delims, '%', '+', unicode, empty path segments, the
1024-byte limit) is uploaded with boto3 and must come back byte-identical
through Envoy, whatever encoding the client used for the path.
"""

from __future__ import annotations

import itertools
import os
import random
import string
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `import stack`

from stack import (  # noqa: E402
    BUCKET,
    TEMPLATE_PATH,
    WASM_PATH,
    Envoy,
    SeaweedFS,
    env_credentials,
    filter_config,
    origin_config,
)

ACCESS_KEY = "AKIDPRESIGNTEST0001"
# Distinctive so a leak into a response or a log can be grepped for.
SECRET_KEY = "sEcReT-e2e/DO+NOT=LEAK-4f1c9a7e"
VERSIONED_BUCKET = "versioned"


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


def sized_key(prefix: str, unit: str, total: int = 1024, segment_bytes: int = 200) -> str:
    """A key of exactly ``total`` UTF-8 bytes (S3's limit is 1024).

    Split into segments of about ``segment_bytes``: SeaweedFS stores keys as
    filer paths and refuses a single path component longer than 255 bytes.
    """
    key, segment = prefix, 0
    unit_len = len(unit.encode())
    while len(key.encode()) < total:
        room = total - len(key.encode())
        if segment + unit_len > segment_bytes and room > 1:
            key, segment = key + "/", 0
        elif unit_len <= room:
            key, segment = key + unit, segment + unit_len
        else:
            key, segment = key + "x", segment + 1
    assert len(key.encode()) == total and not key.endswith("/")
    return key


HARD_KEYS = [
    "my file(1).mp4",
    "clips/my file(1).mp4",
    "space in name.txt",
    " leading and trailing space ",
    "plus+sign.txt",
    "a+b+c/d+e.txt",
    "tilde~file~.txt",
    "~home/user.txt",
    "at@sign.txt",
    "user@example.com/avatar.png",
    "paren(s).txt",
    "bang!.txt",
    "star*.txt",
    "quote'single.txt",
    "eq=als.txt",
    "k=v&x=y.txt",
    "com,ma.txt",
    "semi;colon.txt",
    "literal%25percent.txt",
    "bare%percent.txt",
    "50% off.txt",
    "%2e%2e/literal-dot-escape.txt",  # a literal "%2e%2e" segment is not ".."
    "%2F-literal-escaped-slash.txt",
    "amp&ersand.txt",
    "dollar$ign.txt",
    "co:lon.txt",
    "12:30:00.log",
    "question?mark.txt",
    "hash#tag.txt",
    "brack[et]s.txt",
    "all !$&'()*+,;=:@~ subdelims.bin",
    'unsafe "quotes" <angle> {brace} |pipe| ^caret^ `tick`.txt',
    "café.txt",
    "unicode/é/ñ/ü.txt",
    "中文/文件名.txt",
    "emoji/😀🎬.mp4",
    "mixed/Ünïcödé + spaces (and) 中.txt",
    "nested/a/b/c/d/e.txt",
    "dbl//slash.txt",
    "dbl2/x//y///z.txt",
    "/leading-slash.txt",
    "dots/trailing.dot.",
    "dots/...three.txt",
    "dots/.hidden",
    "dots/..double-prefix",
    "UPPER/lower/MiXeD.TXT",
    "-dash_underscore.txt",
    sized_key("long-ascii/", "x"),
    sized_key("long-utf8/", "é中"),
]
ZERO_BYTE_KEY = "empty/zero-bytes.bin"
BIG_KEY = "big/multi-chunk.bin"  # above weed's 4 MiB chunk size, so it spans chunks
FILLER_SEPARATORS = [" ", "+", "~", "@", "(", ")", "!", "*", "'", "=", ",", ";", "&",
                     "$", ":", "?", "#", "[", "]", "%", "%25", "é", "中", "😀", "-", "."]


def _filler_keys(count: int) -> list[str]:
    """Extra keys to pass 100, each mixing one separator into a nested path."""
    separators = itertools.cycle(FILLER_SEPARATORS)
    return [f"gen/{i % 7}/file{sep}{i:03d}{sep}end.bin" for i, sep in zip(range(count), separators)]


def _seaweed_path(key: str) -> str:
    """How SeaweedFS files a key: empty segments (``a//b``, leading ``/``) collapse."""
    return "/".join(part for part in key.split("/") if part)


def _check_corpus(keys: list[str]) -> None:
    """Keys must stay distinct after SeaweedFS's path collapsing, and no key may
    be a directory of another (the filer cannot hold both)."""
    paths = [_seaweed_path(k) for k in keys]
    assert len(set(paths)) == len(paths), "two keys collapse to the same SeaweedFS path"
    directories = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    clashes = directories.intersection(paths)
    assert not clashes, f"keys that are also directories: {sorted(clashes)}"
    too_long = [k for k in keys if len(k.encode()) > 1024]
    assert not too_long, "keys longer than S3's 1024 bytes"


@dataclass(frozen=True)
class Corpus:
    objects: dict[str, bytes]

    @property
    def keys(self) -> list[str]:
        return list(self.objects)

    def with_min_size(self, size: int) -> list[str]:
        return [k for k, v in self.objects.items() if len(v) >= size]


def build_corpus(seed: int = 20241128) -> Corpus:
    """Deterministic keys and random bodies of varied sizes (some < 200 bytes)."""
    rng = random.Random(seed)
    keys = HARD_KEYS + _filler_keys(60)
    _check_corpus(keys + [ZERO_BYTE_KEY, BIG_KEY])
    objects = {key: rng.randbytes(rng.choice([rng.randint(1, 199), rng.randint(200, 8192)])) for key in keys}
    objects[ZERO_BYTE_KEY] = b""
    objects[BIG_KEY] = rng.randbytes(5 * 1024 * 1024 + 123)
    return Corpus(objects)


# ---------------------------------------------------------------------------
# Request helpers shared by the test modules
# ---------------------------------------------------------------------------

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def pct(char: str, lower: bool = False) -> str:
    return "".join(("%{:02x}" if lower else "%{:02X}").format(b) for b in char.encode())


def encode_full(key: str) -> str:
    """Encode every byte except unreserved characters and '/' (as S3 and the filter do)."""
    return "".join(c if c in UNRESERVED or c == "/" else pct(c) for c in key)


def media_path(key: str, encoder=encode_full) -> str:
    return "/media/" + encoder(key)


def describe(method: str, path: str, resp) -> str:
    """The exact request and the gist of the response, for failure reports."""
    text = f"{method} {path if len(path) <= 200 else path[:200] + '...'} -> {resp.status}"
    if "x-presign-error" in resp.headers:
        text += f" x-presign-error={resp.headers['x-presign-error']}"
    if resp.status >= 300:
        text += f" body={resp.body[:160]!r}"
    return text


def assert_each(keys: list[str], check, what: str, workers: int = 8) -> None:
    """Run ``check(key) -> failure message | None`` for every key concurrently and
    report all failures at once, so one broken character class doesn't hide another."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failures = [message for message in pool.map(check, keys) if message]
    assert not failures, f"{len(failures)}/{len(keys)} {what} failed:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def wasm_path() -> Path:
    """The built filter; without it the suite skips, unless CI demands it."""
    if not WASM_PATH.is_file():
        message = (f"{WASM_PATH} is missing; build it with "
                   "`cargo build --release --target wasm32-wasip1`")
        if os.environ.get("ENVOY_PRESIGN_REQUIRE_WASM"):
            pytest.fail(message + " (ENVOY_PRESIGN_REQUIRE_WASM is set)", pytrace=False)
        pytest.skip(message)
    return WASM_PATH


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return build_corpus()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory, corpus: Corpus):
    """One strict-auth SeaweedFS holding the corpus in bucket ``media``."""
    with SeaweedFS(tmp_path_factory.mktemp("origin"), ACCESS_KEY, SECRET_KEY) as origin:
        client = origin.client()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]),
                          corpus.objects.items()))
        yield origin


@pytest.fixture(scope="session")
def start_envoy(tmp_path_factory, wasm_path: Path, seaweedfs: SeaweedFS):
    """Factory: ``start_envoy(config, env)`` -> a started Envoy, stopped at session end.

    ``start=False`` returns it unstarted, for tests that expect ``start()`` to fail;
    ``extra_substitutions`` fills or overrides template placeholders (see stack.Envoy).
    """
    started: list[Envoy] = []

    def make(config: dict, env: dict[str, str] | None = None, start: bool = True,
             extra_substitutions: dict[str, object] | None = None) -> Envoy:
        envoy = Envoy(tmp_path_factory.mktemp("envoy"), TEMPLATE_PATH, wasm_path, config,
                      seaweedfs.s3_port, env=env or {}, concurrency=2,
                      extra_substitutions=extra_substitutions)
        started.append(envoy)
        return envoy.start() if start else envoy

    yield make
    for envoy in started:
        envoy.stop()


@pytest.fixture(scope="session")
def envoy(start_envoy, seaweedfs: SeaweedFS) -> Envoy:
    """The filter with env credentials: ``/media/`` and ``/versioned/`` origins."""
    config = filter_config(seaweedfs.s3_port)
    config["origins"].append(origin_config(
        seaweedfs.s3_port, name="versioned", match={"prefix": "/versioned/"},
        bucket=VERSIONED_BUCKET, strip_prefix="/versioned/"))
    return start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY))
