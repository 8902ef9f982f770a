"""Redirect mode (``delivery: "redirect"``), end to end: Envoy answers matched GET and HEAD
requests with a 307 to the presigned URL, and the client fetches the object from SeaweedFS
itself.

* every key of the corpus, followed by a redirect-following client (urllib3, the client
  under ``requests``), comes back 200 with its exact bytes; its ``Location``, GET and HEAD, is
  byte for byte the URL boto3 presigns at the same ``X-Amz-Date`` (the signatures of the
  ``.wasm`` as V8 runs it, its SHA-256 in WebAssembly SIMD, beside the host tests' vectors);
  HEAD follows to a HEAD-signed
  URL; a Range follows to a 206 with the exact range; the response-content-* overrides
  reach SeaweedFS signed;
* the ``Location`` of a key is the same on two Envoys and on both workers of each within
  a window, and changes after the window's refresh (short timings, the test waits for a
  window start, so a boundary cannot fall mid-test);
* bad input gets the same 400/405 as in proxy mode, an unmatched request never a redirect;
* a real browser (Debian's headless Chromium, driven over the DevTools protocol) plays a
  ``<video>`` whose source goes through the redirect; its Range requests reach the origin
  through a recording relay that stands for the public endpoint.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import pytest
import urllib3
from botocore.config import Config
from conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    Corpus,
    Stats,
    assert_each,
    clear_of_window_boundary,
    connections_per_worker,
    describe,
    media_path,
    poll,
)

from browser import Chromium, RecordingRelay, page_server
from stack import BUCKET, REGION, REPO_ROOT, Envoy, Response, env_credentials, filter_config, raw_request

OVERRIDES = ["response-content-disposition", "response-content-type"]
APP_ORIGIN = "http://app.example.test"
CLIP = REPO_ROOT / "tests" / "fixtures" / "media" / "clip.webm"
CLIP_KEY = "browser/clip.webm"


def redirect_config(origin_port: int, **overrides) -> dict:
    """The session's origin, in redirect mode, with the overrides allowed and one CORS origin."""
    return filter_config(origin_port, delivery="redirect", allow_query=["versionId", *OVERRIDES],
                         cors_origins=[APP_ORIGIN], **overrides)


@pytest.fixture(scope="module")
def redirect_envoy(start_envoy, seaweedfs) -> Envoy:
    return start_envoy(redirect_config(seaweedfs.s3_port), env_credentials(ACCESS_KEY, SECRET_KEY))


def location_of(resp: Response) -> str:
    assert resp.status == 307, resp
    return resp.headers["location"]


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def expires_at(url: str) -> int:
    q = query(url)
    return calendar.timegm(time.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")) + int(q["X-Amz-Expires"])


def fetch_location(url: str, method: str = "GET", headers: dict | None = None) -> Response:
    """Request a Location exactly as written (raw path and query, its own Host)."""
    parts = urllib.parse.urlsplit(url)
    return raw_request(parts.port, method, f"{parts.path}?{parts.query}", headers=headers,
                       host=parts.netloc)


# A redirect-following client: the pool follows 307s itself (method kept, headers kept,
# bodies read). No proxy from the environment: everything is on loopback.
CLIENT = urllib3.PoolManager(retries=urllib3.Retry(total=3, redirect=2, raise_on_redirect=True))


def followed(envoy: Envoy, method: str, path: str, headers: dict | None = None):
    resp = CLIENT.request(method, f"http://127.0.0.1:{envoy.port}{path}", headers=headers,
                          redirect=True, preload_content=True, timeout=30)
    return resp


# ---------------------------------------------------------------------------
# Following the redirect
# ---------------------------------------------------------------------------


def test_every_corpus_key_follows_to_its_exact_bytes(redirect_envoy: Envoy, corpus: Corpus):
    stats = Stats(redirect_envoy)

    def check(key: str) -> str | None:
        resp = followed(redirect_envoy, "GET", media_path(key))
        hops = [h.status for h in resp.retries.history] if resp.retries else []
        if resp.status != 200 or resp.data != corpus.objects[key] or hops != [307]:
            return f"{key!r}: {resp.status} after {hops}, {len(resp.data)} of {len(corpus.objects[key])} bytes"
        return None

    assert_each(corpus.keys, check, "redirected GETs")
    # Counted as redirects; not one byte went through Envoy's origin route.
    delta = poll(stats.delta, lambda d: d.get("requests.outcome.redirect") == len(corpus.keys))
    assert delta.get("requests.outcome.redirect") == len(corpus.keys), delta
    assert delta.get("cluster.upstream_rq_total", 0) == 0, delta
    assert sum(v for k, v in delta.items() if k.startswith("requests.outcome.")) == len(corpus.keys)


def boto3_presigner(endpoint: str):
    """Presigns ``(method, key, amz_date, expires_in)`` as boto3 does on the session's bucket
    (path style) with the session's keys, at ``amz_date``. Its clock is patched for each URL:
    call it from one thread only (``mock.patch`` from two threads at once can leave the patch in
    place for every later boto3 call of the process)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def presign(method: str, key: str, amz_date: str, expires_in: int) -> str:
        at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        operation = {"GET": "get_object", "HEAD": "head_object"}[method]
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            return client.generate_presigned_url(operation, Params={"Bucket": BUCKET, "Key": key},
                                                 ExpiresIn=expires_in)

    return presign


def test_locations_are_byte_identical_to_boto3s(redirect_envoy: Envoy, corpus: Corpus, seaweedfs):
    locations: dict[tuple[str, str], str] = {}

    def fetch(key: str) -> str | None:
        for method in ("GET", "HEAD"):
            resp = raw_request(redirect_envoy.port, method, media_path(key))
            if resp.status != 307:
                return describe(method, media_path(key), resp)
            locations[(method, key)] = resp.headers["location"]
        return None

    assert_each(corpus.keys, fetch, "redirects")
    presign = boto3_presigner(f"http://127.0.0.1:{seaweedfs.s3_port}")
    mismatches = []
    for (method, key), url in sorted(locations.items()):
        q = query(url)
        expected = presign(method, key, q["X-Amz-Date"], int(q["X-Amz-Expires"]))
        if url != expected:
            mismatches.append(f"{method} {key!r}: {url!r} != boto3's {expected!r}")
    assert len(locations) == 2 * len(corpus.keys)
    assert not mismatches, f"{len(mismatches)}/{len(locations)} Locations differ from boto3's:\n" + "\n".join(mismatches)
    # boto3's own clock is back: a URL it presigns now carries the present time.
    now = query(boto3.client("s3", endpoint_url="http://127.0.0.1:1", region_name=REGION,
                             aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                             config=Config(signature_version="s3v4"))
                .generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"}))
    assert abs(calendar.timegm(time.strptime(now["X-Amz-Date"], "%Y%m%dT%H%M%SZ")) - time.time()) < 300


def test_head_follows_to_a_head_signed_url(redirect_envoy: Envoy, corpus: Corpus):
    key = "my file(1).mp4"
    get_url = location_of(raw_request(redirect_envoy.port, "GET", media_path(key)))
    head_url = location_of(raw_request(redirect_envoy.port, "HEAD", media_path(key)))
    assert get_url != head_url
    assert query(get_url)["X-Amz-Signature"] != query(head_url)["X-Amz-Signature"]
    # Each URL is good for its own method only (S3 signs the method).
    assert fetch_location(head_url, "HEAD").status == 200
    assert fetch_location(get_url, "HEAD").status == 403
    resp = followed(redirect_envoy, "HEAD", media_path(key))
    assert resp.status == 200 and resp.data == b""
    assert [h.status for h in resp.retries.history] == [307]
    assert int(resp.headers["content-length"]) == len(corpus.objects[key])


def test_range_follows_to_the_exact_range(redirect_envoy: Envoy, corpus: Corpus):
    key = next(k for k in corpus.with_min_size(1000) if "gen/" in k)
    body = corpus.objects[key]
    for first, last in [(0, 99), (500, 999), (len(body) - 10, len(body) - 1)]:
        resp = followed(redirect_envoy, "GET", media_path(key), headers={"Range": f"bytes={first}-{last}"})
        assert resp.status == 206, (first, last, resp.status)
        assert resp.data == body[first:last + 1]
        assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(body)}"


def test_the_redirect_itself(redirect_envoy: Envoy, seaweedfs):
    """307 (never permanent) with an empty body, the URL only in Location, cached privately
    for no longer than the URL has left minus min_remaining (144 s with the defaults)."""
    def redirected() -> tuple[str, Response]:
        before = time.time()
        resp = raw_request(redirect_envoy.port, "GET", media_path("plus+sign.txt"))
        after = time.time()
        url = location_of(resp)
        assert resp.body == b"" and "x-presign-error" not in resp.headers
        cache_control = resp.headers["cache-control"]
        assert cache_control.startswith("private, max-age="), cache_control
        max_age = int(cache_control.removeprefix("private, max-age="))
        assert expires_at(url) - after - 144 - 1 <= max_age <= expires_at(url) - before - 144
        return url, resp

    url, resp = redirected()
    assert url.startswith(f"http://127.0.0.1:{seaweedfs.s3_port}/{BUCKET}/plus%2Bsign.txt?")
    assert "access-control-allow-origin" not in resp.headers
    # The same request again, from the per-worker copy or the shared cache: the same URL,
    # the same bound on max-age.
    for _ in range(4):
        assert redirected()[0] == url


def test_cors_only_for_configured_origins(redirect_envoy: Envoy):
    path = media_path("café.txt")
    resp = raw_request(redirect_envoy.port, "GET", path, headers={"Origin": APP_ORIGIN})
    assert resp.status == 307
    assert resp.headers["access-control-allow-origin"] == APP_ORIGIN
    assert resp.headers["vary"].lower() == "origin"
    resp = raw_request(redirect_envoy.port, "GET", path, headers={"Origin": "http://evil.example.test"})
    assert resp.status == 307 and "access-control-allow-origin" not in resp.headers
    assert resp.headers["vary"].lower() == "origin"


def test_download_name_and_type_overrides_are_signed(redirect_envoy: Envoy, corpus: Corpus):
    key = "emoji/😀🎬.mp4"
    disposition = 'attachment; filename="clip 1.mp4"'
    path = (media_path(key) + "?response-content-disposition=" + urllib.parse.quote(disposition, safe="")
            + "&response-content-type=" + urllib.parse.quote("video/mp4", safe="") + "&other=dropped")
    url = location_of(raw_request(redirect_envoy.port, "GET", path))
    assert query(url)["response-content-disposition"] == disposition
    assert query(url)["response-content-type"] == "video/mp4" and "other" not in query(url)
    resp = followed(redirect_envoy, "GET", path)
    assert resp.status == 200 and resp.data == corpus.objects[key]
    assert resp.headers["content-disposition"] == disposition
    assert resp.headers["content-type"] == "video/mp4"
    # Another name is another URL (another cache identity), not the cached one.
    other = location_of(raw_request(redirect_envoy.port, "GET", path.replace("clip%201", "clip%202")))
    assert other != url and query(other)["X-Amz-Signature"] != query(url)["X-Amz-Signature"]
    # The overrides are signed: changing one in the URL breaks it.
    tampered = url.replace("clip%201", "clip%203")
    assert tampered != url and fetch_location(tampered).status == 403


# ---------------------------------------------------------------------------
# The same Location fleet-wide within a window, a new one after it
# ---------------------------------------------------------------------------

# expires_in 12 s, refresh_before 4 s: an aligned window of 8 s (min_remaining 0.8 s).
SHORT = {"expires_in": 12, "refresh_before": 4}
WINDOW = 12 - 4


def test_location_is_fleet_stable_within_a_window_and_changes_after_it(start_envoy, seaweedfs):
    envoys = [start_envoy(redirect_config(seaweedfs.s3_port, **SHORT), env_credentials(ACCESS_KEY, SECRET_KEY))
              for _ in range(2)]
    paths = [media_path(k) for k in ("my file(1).mp4", "中文/文件名.txt")]
    workers_before = [connections_per_worker(e) for e in envoys]

    def locations(rounds: int) -> dict[str, set[str]]:
        """path -> the Locations seen, over ``rounds`` new connections per Envoy and path; the
        second Envoy is asked over a second later than the first, so it signs another second."""
        seen: dict[str, set[str]] = {}
        for n, envoy in enumerate(envoys):
            if n:
                time.sleep(1.2)
            jobs = [p for p in paths for _ in range(rounds)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                got = list(pool.map(lambda p: (p, location_of(raw_request(envoy.port, "GET", p))), jobs))
            for path, url in got:
                seen.setdefault(path, set()).add(url)
        return seen

    # Start right after a window boundary: the first round cannot see the next one.
    clear_of_window_boundary(WINDOW - 1.5, window=WINDOW)
    started = time.time()
    first = locations(rounds=12)
    assert time.time() - started < WINDOW - 2, "the first round took too long to stay in its window"
    assert all(len(urls) == 1 for urls in first.values()), first
    # Signed at the window's start (X-Amz-Date a multiple of the window), not at a request's time.
    assert all((expires_at(url) - 12) % WINDOW == 0 for urls in first.values() for url in urls), first
    # Both workers of each Envoy answered (each request is a new connection).
    for envoy, before in zip(envoys, workers_before):
        after = connections_per_worker(envoy)
        assert len([w for w, n in after.items() if n > before.get(w, 0)]) == 2, (before, after)

    # After the boundary the first request of each Envoy refreshes; every later one gets
    # the new URL, signed at the new window's start, the same on both Envoys.
    to_boundary = WINDOW - time.time() % WINDOW
    time.sleep(to_boundary + 0.3)
    for envoy in envoys:
        for path in paths:
            location_of(raw_request(envoy.port, "GET", path))
    second = locations(rounds=6)
    for path in paths:
        (old,), (new,) = first[path], second[path]
        assert new != old, path
        assert expires_at(new) - expires_at(old) == WINDOW, (old, new)
        assert fetch_location(new).status == 200


# ---------------------------------------------------------------------------
# Bad input and unmatched requests
# ---------------------------------------------------------------------------

BAD = [
    ("GET", "/media/bad%zzescape", {}),
    ("GET", "/media/a/../b", {}),
    ("GET", "/media/%2e%2e/x", {}),
    ("GET", "/media/", {}),
    ("GET", "/media/a%00", {}),
    ("GET", "/media/x?versionId=" + "v" * 2100, {}),
    ("HEAD", "/media/bad%zz", {}),
    ("POST", "/media/my%20file(1).mp4", {}),
    ("PUT", "/media/x", {}),
    ("DELETE", "/media/x", {}),
    ("OPTIONS", "/media/x", {"Origin": APP_ORIGIN}),
]
UNMATCHED = [
    ("GET", "/unmatched/x", {}),
    ("GET", "/media", {}),
    ("HEAD", "/MEDIA/x", {}),
    ("GET", "/other/my%20file(1).mp4?X-Amz-Signature=client", {"Authorization": "AWS4-HMAC-SHA256 x"}),
    ("GET", "/unmatched/x", {"x-envoy-presign-origin": "media"}),
]


def test_bad_input_gets_the_proxy_modes_replies(redirect_envoy: Envoy, envoy: Envoy):
    """The session's proxy-mode Envoy and the redirect one answer bad input identically."""
    for method, path, headers in BAD:
        proxy = raw_request(envoy.port, method, path, headers=headers)
        redirect = raw_request(redirect_envoy.port, method, path, headers=headers)
        assert proxy.status in (400, 405), describe(method, path, proxy)
        assert (redirect.status, redirect.body) == (proxy.status, proxy.body), describe(method, path, redirect)
        for name in ("x-presign-error", "allow", "content-type"):
            assert redirect.headers.get(name) == proxy.headers.get(name), (name, describe(method, path, redirect))
        assert "location" not in redirect.headers


def test_no_redirect_for_an_unmatched_request(redirect_envoy: Envoy):
    for method, path, headers in UNMATCHED:
        resp = raw_request(redirect_envoy.port, method, path, headers=headers)
        assert resp.status == 404, describe(method, path, resp)
        assert "location" not in resp.headers and "X-Amz" not in resp.body.decode("latin-1")


# ---------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------


PAGE = """<!doctype html><html><head><title>redirect</title></head><body>
<video id="v" src="{src}" muted autoplay playsinline width="320" height="240"></video>
</body></html>"""


def test_a_browser_plays_a_video_through_the_redirect(start_envoy, seaweedfs, tmp_path: Path):
    seaweedfs.client().put_object(Bucket=BUCKET, Key=CLIP_KEY, Body=CLIP.read_bytes(), ContentType="video/webm")
    relay = RecordingRelay(seaweedfs.s3_port)
    envoy = start_envoy(redirect_config(seaweedfs.s3_port, public_endpoint=f"http://127.0.0.1:{relay.port}"),
                        env_credentials(ACCESS_KEY, SECRET_KEY))
    stats = Stats(envoy)
    page = page_server(PAGE.format(src=f"http://127.0.0.1:{envoy.port}{media_path(CLIP_KEY)}"))
    browser = Chromium(tmp_path).start()
    try:
        tools = browser.first_page()
        tools.call("Page.enable")
        tools.call("Page.navigate", url=f"http://127.0.0.1:{page.server_address[1]}/")
        state_js = ("(() => { const v = document.getElementById('v'); return v && {t: v.currentTime, "
                    "ready: v.readyState, error: v.error && v.error.code, src: v.currentSrc}; })()")
        state = poll(lambda: tools.evaluate(state_js) or {}, lambda s: s.get("t", 0) > 1.5 or s.get("error"),
                     timeout=30)
        shot = tools.call("Page.captureScreenshot", format="png")
        (tmp_path / "redirect-video.png").write_bytes(base64.b64decode(shot["data"]))
        assert not state.get("error") and state.get("t", 0) > 1.5, f"video did not play: {state}"
    finally:
        browser.stop()
        page.shutdown()
        relay.close()
    # The browser's requests for the clip went to the public endpoint, with Range, presigned.
    clip = [(line, h) for line, h in relay.requests() if line.startswith(f"GET /{BUCKET}/{CLIP_KEY}?")]
    assert clip, relay.requests()
    assert all("X-Amz-Signature=" in line and h.get("host") == f"127.0.0.1:{relay.port}" for line, h in clip)
    assert any(h.get("range", "").startswith("bytes=") for _, h in clip), clip
    assert 206 in relay.statuses(), relay.statuses()
    delta = poll(stats.delta, lambda d: d.get("requests.outcome.redirect", 0) >= 1)
    assert delta.get("requests.outcome.redirect", 0) >= 1 and delta.get("cluster.upstream_rq_total", 0) == 0, delta
    assert (tmp_path / "redirect-video.png").stat().st_size > 1000
