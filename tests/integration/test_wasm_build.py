"""The built modules are the ones docs/performance.md measured: compiled with WebAssembly SIMD.

`.cargo/config.toml` adds ``-C target-feature=+simd128`` for wasm32-wasip1, so sha2 computes
SHA-256's message schedule with vector instructions in V8. A ``RUSTFLAGS`` in the environment
silently replaces those flags, and the module would still load and sign, only slower: these
tests read the feature set the compiler records in every module's ``target_features`` custom
section. Every other integration test runs these same modules in Envoy, so a signature that the
SIMD hashing got wrong would fail them against SeaweedFS.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stack import REPO_ROOT, WASM_PATH

# The test-only build (make integration builds it with the test features) must be compiled
# like the release one, or the tests that load it would measure another module.
TEST_ONLY_WASM = REPO_ROOT / "target" / "test-only" / "wasm32-wasip1" / "release" / "envoy_presign.wasm"


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``at``, and the offset after it."""
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated LEB128 number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def custom_sections(module: bytes) -> dict[str, bytes]:
    """A Wasm module's custom sections (id 0) by name."""
    if module[:4] != b"\0asm":
        raise ValueError("not a Wasm module")
    sections: dict[str, bytes] = {}
    at = 8
    while at < len(module):
        section_id = module[at]
        size, at = _leb128(module, at + 1)
        body = module[at:at + size]
        at += size
        if section_id == 0:
            name_len, name_at = _leb128(body, 0)
            sections[body[name_at:name_at + name_len].decode()] = body[name_at + name_len:]
    return sections


def target_features(module: bytes) -> set[str]:
    """The features the module was compiled with (``+name`` entries of ``target_features``)."""
    body = custom_sections(module).get("target_features", b"")
    if not body:
        return set()
    count, at = _leb128(body, 0)
    features = set()
    for _ in range(count):
        prefix = body[at:at + 1]
        length, at = _leb128(body, at + 1)
        if prefix == b"+":
            features.add(body[at:at + length].decode())
        at += length
    return features


def _module(*features: str) -> bytes:
    """A minimal module with only a ``target_features`` section, for the reader's own test."""
    entries = b"".join(b"+" + bytes([len(f)]) + f.encode() for f in features)
    body = bytes([len(b"target_features")]) + b"target_features" + bytes([len(features)]) + entries
    return b"\0asm\x01\0\0\0" + b"\0" + bytes([len(body)]) + body


def test_the_reader_tells_a_module_with_simd_from_one_without():
    assert target_features(_module("mutable-globals", "simd128")) == {"mutable-globals", "simd128"}
    assert "simd128" not in target_features(_module("mutable-globals", "sign-ext"))
    assert target_features(b"\0asm\x01\0\0\0") == set()


@pytest.mark.parametrize("module", [WASM_PATH, TEST_ONLY_WASM], ids=["release", "test-only"])
def test_the_filter_is_built_with_simd128(module: Path):
    assert module.exists(), f"{module} is missing: `make build` (and `make integration`) build it"
    assert "simd128" in target_features(module.read_bytes()), (
        f"{module.name} was built without WebAssembly SIMD: is RUSTFLAGS set? "
        "It replaces .cargo/config.toml's flags")
