#!/usr/bin/env python3
"""`make up`'s last step: wait for the compose stack, seed the bucket, print what to try.

docker/compose.yaml publishes SeaweedFS's S3 port on 127.0.0.1:8333 and Envoy on :10000
(its stats listener on :9902; the admin stays on the container's loopback); the objects are
the ones `make run` seeds (tests/stack.py's demo_objects).
"""
from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from stack import (  # noqa: E402
    BUCKET, DEMO_ACCESS_KEY, DEMO_SECRET_KEY, REGION, _demo_curls, demo_objects)

# The published ports, moved by the same variables as in docker/compose.yaml.
ENVOY_PORT = int(os.environ.get("ENVOY_PORT", "10000"))
STATS_PORT = int(os.environ.get("ENVOY_STATS_PORT", "9902"))
S3_PORT = int(os.environ.get("S3_PORT", "8333"))
PROMETHEUS_PORT = int(os.environ.get("PROMETHEUS_PORT", "9090"))
ALERTMANAGER_PORT = int(os.environ.get("ALERTMANAGER_PORT", "9093"))
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


def main() -> int:
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
    tries = "\n".join(curls)
    print(f"\nenvoy-presign (docker compose): Envoy on :{ENVOY_PORT} (stats :{STATS_PORT}) -> "
          f"SeaweedFS S3 on :{S3_PORT}, bucket '{BUCKET}'; Prometheus on :{PROMETHEUS_PORT} (rules loaded), "
          f"Alertmanager on :{ALERTMANAGER_PORT}\n\nTry:\n{tries}\n"
          f"  curl -sS '{prometheus}/api/v1/query?query=envoy_presign_requests'\n"
          f"  curl -sS {prometheus}/api/v1/rules | head -c 300\n\n"
          "Logs: docker-compose -p envoy-presign -f docker/compose.yaml logs -f envoy\n"
          "Stop: make down\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
