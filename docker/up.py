#!/usr/bin/env python3
"""`make up`'s last step: wait for the compose stack, seed the bucket, print what to try.

docker/compose.yaml publishes SeaweedFS's S3 port on 127.0.0.1:8333 and Envoy on :10000
(its stats listener on :9902; the admin stays on the container's loopback); the objects are
the ones `make run` seeds (tests/stack.py's demo_objects).

`make up-https` runs it twice:

  docker/up.py --make-certs DIR   before compose: a new test CA (tests/testca.py) and a
                                  certificate for `seaweedfs` in DIR (ca.crt, store.crt,
                                  store.key; any previous ones there are replaced)
  docker/up.py --https DIR        after compose (with docker/compose.https.yaml): as above,
                                  then also what to try on the TLS side

Usage: docker/up.py [--make-certs DIR | --https DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from stack import (  # noqa: E402
    BUCKET, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, REGION, _demo_curls, demo_objects)
from render_configs import S3_HTTPS_PORT as S3_HTTPS_PORT_IN_COMPOSE, STORE_TLS_NAME  # noqa: E402

# The published ports, moved by the same variables as in docker/compose.yaml.
ENVOY_PORT = int(os.environ.get("ENVOY_PORT", "10000"))
STATS_PORT = int(os.environ.get("ENVOY_STATS_PORT", "9902"))
S3_PORT = int(os.environ.get("S3_PORT", "8333"))
PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_PORT", "9090"))
ALERTMANAGER_PORT = int(os.environ.get("ALERTMANAGER_PORT", "9093"))
S3_HTTPS_PORT = int(os.environ.get("S3_HTTPS_PORT", str(S3_HTTPS_PORT_IN_COMPOSE)))  # compose.https.yaml
S3 = f"http://127.0.0.1:{S3_PORT}"
TIMEOUT_S = 90


def wait_for(what: str, probe) -> None:
    """Retry `probe` until it returns without raising, or give up after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            probe()
            return
        except Exception as error:  # noqa: BLE001 (any failure means "not yet")
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} not ready after {TIMEOUT_S} s: {error}"
                                 " (see `docker-compose -p envoy-presign -f docker/compose.yaml logs`)")
            time.sleep(1)


# What `--make-certs` leaves in its directory (docker/compose.https.yaml mounts them).
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "store.crt", "store.key"


def make_certs(directory: Path) -> None:
    """A new test CA and a certificate for `seaweedfs` (and `*.seaweedfs`) signed by it,
    valid for a day (tests/testca.py), in `directory`: ca.crt (Envoy's trusted_ca),
    store.crt and store.key (SeaweedFS's). Replaces what a previous run left there."""
    from testca import make_pki

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Only the files this makes (and make_pki's), never the directory's other contents.
    labels = ["good", "wrong_name", "expired", "unknown_ca"]
    for name in [CA_FILE, CERT_FILE, KEY_FILE, *(f"{label}.{ext}" for label in labels for ext in ("crt", "key"))]:
        (directory / name).unlink(missing_ok=True)
    pki = make_pki(directory, name=STORE_TLS_NAME)
    for pair in pki.bad().values():  # the other leaves make_pki makes: not needed here
        pair.cert.unlink()
        pair.key.unlink()
    pki.good.cert.rename(directory / CERT_FILE)
    pki.good.key.rename(directory / KEY_FILE)
    # A throwaway demo key, readable by the container's weed (uid 1000, not this user) through
    # the read-only bind mount: the key is 0644 (readable, writable by its owner only), and
    # the directory stays 0700, so on this host only its owner reaches the key at all. Nothing
    # is world-writable. A real key would be owned by the server's uid and 0600 (or 0400).
    (directory / KEY_FILE).chmod(0o644)
    directory.chmod(0o700)
    print(f"test CA and certificate for {STORE_TLS_NAME} made in {directory}")


def https_curls(stats: str, tls_dir: Path) -> list[str]:
    """What to try on the TLS side: Envoy's handshakes with the store, and the store itself."""
    store = f"https://{STORE_TLS_NAME}:{S3_HTTPS_PORT}"
    return [
        f"  curl -sS '{stats}/stats/prometheus?filter=cluster.media.ssl' | grep -E "
        "'^envoy_cluster_ssl_(handshake|fail_verify)'   # TLS handshakes with the store, and failures",
        f"  curl -sS --cacert {tls_dir / CA_FILE} --resolve {STORE_TLS_NAME}:{S3_HTTPS_PORT}:127.0.0.1 "
        f"-o /dev/null -w '%{{http_code}}\\n' {store}/{BUCKET}/hello.txt   # 403: the store itself, unsigned",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--make-certs", type=Path, metavar="DIR",
                      help="make a test CA and a certificate for the store in DIR, and exit")
    mode.add_argument("--https", type=Path, metavar="DIR",
                      help="the stack of docker/compose.https.yaml, its test CA in DIR")
    args = parser.parse_args(argv)
    if args.make_certs:
        make_certs(args.make_certs.resolve())
        return 0

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=S3, region_name=REGION, aws_access_key_id=DEMO_ACCESS_KEY,
                      aws_secret_access_key=DEMO_SECRET_KEY,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    wait_for("SeaweedFS (bucket media)", lambda: s3.head_bucket(Bucket=BUCKET))
    for key, (body, content_type) in demo_objects().items():
        wait_for(f"upload of {key}",
                 lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type))
    base = f"http://127.0.0.1:{ENVOY_PORT}"
    stats = f"http://127.0.0.1:{STATS_PORT}"
    wait_for("Envoy", lambda: urllib.request.urlopen(f"{stats}/ready", timeout=2))
    wait_for("a presigned GET through Envoy",
             lambda: urllib.request.urlopen(f"{base}/media/hello.txt", timeout=5))
    prometheus = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    # `make run`'s commands, but the admin's /stats: in compose only the stats listener is
    # published, and it serves /stats/prometheus.
    curls = [line for line in _demo_curls(ENVOY_PORT, 0).splitlines() if "/stats?" not in line]
    curls.append(f"  curl -sS '{stats}/stats/prometheus?filter=envoy_presign'")
    store = f"SeaweedFS S3 on :{S3_PORT}"
    if args.https:
        tls_dir = args.https.resolve()
        curls += https_curls(stats, tls_dir)
        store = (f"SeaweedFS S3 over https as {STORE_TLS_NAME}:{S3_HTTPS_PORT_IN_COMPOSE} (published on "
                 f":{S3_HTTPS_PORT}; plain S3 on :{S3_PORT}), certificate verified against the test CA "
                 f"{tls_dir / CA_FILE} (removed by make down)")
    tries = "\n".join(curls)
    print(f"\nenvoy-presign (docker compose): Envoy on :{ENVOY_PORT} (stats :{STATS_PORT}) -> "
          f"{store}, bucket '{BUCKET}'; Prometheus on :{PROMETHEUS_PORT} (rules loaded), "
          f"Alertmanager on :{ALERTMANAGER_PORT}\n\nTry:\n{tries}\n"
          f"  curl -sS '{prometheus}/api/v1/query?query=envoy_presign_requests'\n"
          f"  curl -sS {prometheus}/api/v1/rules | head -c 300\n\n"
          "Logs: docker-compose -p envoy-presign -f docker/compose.yaml logs -f envoy\n"
          "Stop: make down\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
