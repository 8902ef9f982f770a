#!/usr/bin/env python3
"""Regenerate tests/vectors/presign.json: SigV4 presigned URLs made by boto3.

boto3 is the independent reference presigner: the Rust unit tests feed each
vector's inputs to the filter's signer and require the very same URL, so a
disagreement on canonicalisation (key encoding, query order, credential scope,
session token placement, ...) shows up as a failing vector instead of a 403
from a real S3 in production.

The output must be reproducible, so botocore's clock is frozen: botocore
(1.44) stamps X-Amz-Date in ``SigV4Auth.add_auth`` /
``S3SigV4QueryAuth`` via ``botocore.auth.get_current_datetime`` (imported
from ``botocore.compat``), which is patched here.  Every generated URL is
checked to carry the intended X-Amz-Date, so a botocore change that moves the
clock elsewhere fails loudly instead of writing time-dependent vectors.

Usage:
    .venv/bin/python scripts/gen_vectors.py            # rewrite the file
    .venv/bin/python scripts/gen_vectors.py --check    # exit 1 if stale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "vectors" / "presign.json"


def _isolate_from_user_aws_config() -> None:
    """Make boto3 ignore the caller's AWS environment and config files.

    Settings such as ``AWS_ENDPOINT_URL_S3`` or an ``s3 = addressing_style``
    line in ~/.aws/config would silently change the generated URLs.
    """
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


_isolate_from_user_aws_config()

import boto3  # noqa: E402  (must be imported after the environment is cleaned)
import botocore  # noqa: E402
import botocore.auth  # noqa: E402
from botocore.config import Config  # noqa: E402


@dataclass(frozen=True)
class Creds:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


# AWS's documented example key pair, and a temporary-credential set whose
# secret and token contain '/', '+' and '=' (the characters that break naive
# query encoding of X-Amz-Security-Token).
STATIC = Creds("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION = Creds(
    "ASIAEXAMPLETEMPKEY01",
    "tEsT/sEcReT+kEy=0123456789abcdefEXAMPLE",
    "IQoJb3JpZ2luX2VjEXAMPLE//session+token/with=padding==",
)

# Fixed signing instants (unix seconds).
T_AWS_SUITE = 1440938160  # 2015-08-30T12:36:00Z, the date of AWS's SigV4 test suite
T_2023 = 1700000000  # 2023-11-14T22:13:20Z
T_LEAP_EOD = 1709251199  # 2024-02-29T23:59:59Z, last second of a leap day
T_2030 = 1893456000  # 2030-01-01T00:00:00Z

LOCAL = "http://127.0.0.1:8333"
AWSLIKE = "https://s3.example.com"
MINIO = "http://minio.local:9000"

VERSION_ID = "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"


def _long_key() -> str:
    """A key of exactly 1024 UTF-8 bytes (the S3 maximum), in 199-byte segments."""
    key = "long/" + "".join("/" if i % 200 == 199 else "x" for i in range(1024 - len("long/")))
    assert len(key.encode()) == 1024 and not key.endswith("/")
    return key


@dataclass(frozen=True)
class Spec:
    """One vector's inputs; ``addressing`` is what is *requested* from boto3."""

    name: str
    key: str
    method: str = "GET"
    endpoint: str = LOCAL
    bucket: str = "media"
    addressing: str = "path"
    region: str = "us-east-1"
    expires_in: int = 3600
    time: int = T_2023
    creds: Creds = STATIC
    version_id: str | None = None


SPECS: list[Spec] = [
    # --- plain keys, basic method/addressing/endpoint matrix -----------------
    Spec("get_path_local_simple", "photos/cat.jpg"),
    Spec("head_path_local_simple", "photos/cat.jpg", method="HEAD"),
    Spec("get_path_awslike_simple", "photos/cat.jpg", endpoint=AWSLIKE),
    Spec("get_virtual_awslike_simple", "photos/cat.jpg", endpoint=AWSLIKE, addressing="virtual"),
    Spec("get_virtual_minio_simple", "photos/cat.jpg", endpoint=MINIO, addressing="virtual"),
    Spec("head_virtual_minio_simple", "photos/cat.jpg", method="HEAD", endpoint=MINIO, addressing="virtual"),
    # boto3 refuses virtual hosting for an IP endpoint and for a dotted bucket
    # over https (certificate mismatch): both are recorded as "path".
    Spec("get_virtual_requested_ip_endpoint", "photos/cat.jpg", addressing="virtual"),
    Spec("get_virtual_requested_dotted_bucket_https", "photos/cat.jpg", endpoint=AWSLIKE,
         bucket="my.dotted.bucket", addressing="virtual"),
    Spec("get_path_dotted_bucket", "photos/cat.jpg", endpoint=MINIO, bucket="my.dotted.bucket"),
    # --- one hard character per vector ----------------------------------------
    Spec("get_key_space", "my file.txt"),
    Spec("get_key_plus", "a+b.txt", endpoint=MINIO, addressing="virtual"),
    Spec("get_key_tilde", "~user/file~1.txt"),
    Spec("get_key_at", "user@example.com/avatar.png", region="eu-west-1"),
    Spec("get_key_parens", "clips/my file(1).mp4"),
    Spec("get_key_bang", "wow!.txt", endpoint=AWSLIKE, addressing="virtual"),
    Spec("get_key_star", "glob*.txt"),
    Spec("head_key_single_quote", "it's.txt", method="HEAD"),
    Spec("get_key_equals", "k=v.txt"),
    Spec("get_key_comma", "a,b,c.csv", region="ap-southeast-2"),
    Spec("get_key_semicolon", "a;b.txt"),
    Spec("get_key_ampersand", "tom&jerry.mp4", endpoint=MINIO),
    Spec("get_key_dollar", "$price.txt"),
    Spec("get_key_colon", "logs/12:30:00.log"),
    Spec("get_key_question", "what?.txt", endpoint=AWSLIKE, addressing="virtual"),
    Spec("get_key_hash", "issue#42.md"),
    Spec("get_key_brackets", "arr[0].json"),
    Spec("get_key_literal_pct25", "100%25.txt"),
    Spec("head_key_literal_pct", "50% off.txt", method="HEAD", endpoint=MINIO, addressing="virtual"),
    Spec("get_key_all_subdelims", "all !$&'()*+,;=:@~ chars.bin"),
    # --- unicode ---------------------------------------------------------------
    Spec("get_key_unicode_e_acute", "café/menu é.pdf", region="eu-west-3"),
    Spec("get_key_unicode_cjk", "中文/文件.txt", endpoint=AWSLIKE, addressing="virtual", region="ap-northeast-1"),
    Spec("get_key_unicode_emoji", "emoji/😀🎬.mp4"),
    # --- structure ---------------------------------------------------------------
    Spec("get_key_nested", "a/b/c/d.txt"),
    Spec("get_key_double_slash", "a//b"),
    Spec("get_key_leading_slash", "/leading.txt"),
    Spec("get_key_leading_slash_virtual", "/leading.txt", endpoint=MINIO, addressing="virtual"),
    Spec("get_key_1024_bytes", _long_key()),
    # --- credentials / expiry / time ----------------------------------------------
    Spec("get_session_token", "clips/my file(1).mp4", creds=SESSION),
    Spec("head_session_token_virtual", "photos/cat.jpg", method="HEAD", endpoint=AWSLIKE,
         addressing="virtual", creds=SESSION, region="us-west-2"),
    Spec("get_expires_1s", "photos/cat.jpg", expires_in=1),
    Spec("get_expires_max_7d", "photos/cat.jpg", expires_in=604800, region="eu-central-1"),
    Spec("get_time_aws_suite", "photos/cat.jpg", time=T_AWS_SUITE),
    Spec("get_time_leap_day_end", "photos/cat.jpg", time=T_LEAP_EOD, creds=SESSION),
    Spec("get_time_2030", "a+b.txt", time=T_2030, endpoint=MINIO, addressing="virtual"),
    # --- versionId query parameter ---------------------------------------------------
    Spec("get_version_id", "photos/cat.jpg", version_id=VERSION_ID),
    Spec("head_version_id_session", "clips/my file(1).mp4", method="HEAD", version_id=VERSION_ID,
         creds=SESSION),
    Spec("get_version_id_virtual", "a+b.txt", endpoint=AWSLIKE, addressing="virtual",
         version_id=VERSION_ID, region="sa-east-1"),
]

OPERATION = {"GET": "get_object", "HEAD": "head_object"}


def _naive_utc(unix: int) -> dt.datetime:
    """botocore works with naive datetimes that are implicitly UTC."""
    return dt.datetime.fromtimestamp(unix, tz=dt.timezone.utc).replace(tzinfo=None)


def _presign(spec: Spec) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=spec.endpoint,
        region_name=spec.region,
        aws_access_key_id=spec.creds.access_key_id,
        aws_secret_access_key=spec.creds.secret_access_key,
        aws_session_token=spec.creds.session_token,
        config=Config(signature_version="s3v4", s3={"addressing_style": spec.addressing}),
    )
    params = {"Bucket": spec.bucket, "Key": spec.key}
    if spec.version_id is not None:
        params["VersionId"] = spec.version_id
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=_naive_utc(spec.time)):
        return client.generate_presigned_url(OPERATION[spec.method], Params=params, ExpiresIn=spec.expires_in)


def _actual_addressing(spec: Spec, url: str) -> str:
    """Which style boto3 really used: it silently falls back to path style."""
    host = urlsplit(url).hostname
    endpoint_host = urlsplit(spec.endpoint).hostname
    if host == f"{spec.bucket}.{endpoint_host}":
        return "virtual"
    if host == endpoint_host and urlsplit(url).path.startswith(f"/{spec.bucket}/"):
        return "path"
    raise AssertionError(f"{spec.name}: cannot tell the addressing style of {url}")


def _check(spec: Spec, url: str) -> None:
    """Guard against a botocore change that would make the vectors wrong or unstable."""
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    stamp = _naive_utc(spec.time).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{spec.creds.access_key_id}/{stamp[:8]}/{spec.region}/s3/aws4_request"
    expected = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Date": stamp,
        "X-Amz-Expires": str(spec.expires_in),
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Credential": scope,
    }
    for name, value in expected.items():
        if query.get(name) != value:
            raise AssertionError(f"{spec.name}: {name}={query.get(name)!r}, expected {value!r} in {url}")
    if query.get("X-Amz-Security-Token") != spec.creds.session_token:
        raise AssertionError(f"{spec.name}: unexpected X-Amz-Security-Token in {url}")
    if query.get("versionId") != spec.version_id:
        raise AssertionError(f"{spec.name}: unexpected versionId in {url}")


def build_vectors() -> list[dict]:
    names = [s.name for s in SPECS]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"duplicate vector names: {sorted(duplicates)}")
    vectors = []
    for spec in SPECS:
        url = _presign(spec)
        _check(spec, url)
        vectors.append(
            {
                "name": spec.name,
                "method": spec.method,
                "endpoint": spec.endpoint,
                "bucket": spec.bucket,
                "key": spec.key,
                "addressing": _actual_addressing(spec, url),
                "region": spec.region,
                "service": "s3",
                "expires_in": spec.expires_in,
                "time": spec.time,
                "access_key_id": spec.creds.access_key_id,
                "secret_access_key": spec.creds.secret_access_key,
                "session_token": spec.creds.session_token,
                "query": [["versionId", spec.version_id]] if spec.version_id is not None else [],
                "url": url,
            }
        )
    return vectors


def render(vectors: list[dict]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file differs")
    args = parser.parse_args(argv)

    vectors = build_vectors()
    text = render(vectors)
    fallbacks = sum(1 for s, v in zip(SPECS, vectors) if s.addressing != v["addressing"])
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != text:
            print(f"{args.output} is stale: rerun scripts/gen_vectors.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(vectors)} vectors)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(
        f"wrote {len(vectors)} vectors to {args.output} "
        f"(boto3 {boto3.__version__}, botocore {botocore.__version__}; "
        f"{fallbacks} virtual-style requests fell back to path style)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
