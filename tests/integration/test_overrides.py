"""Response overrides through the real filter in Envoy, in both delivery modes.

S3 turns `response-content-type` and `response-content-disposition` into response headers.
Signed with any value, `?response-content-type=text/html` makes the store serve a user's
upload as a page from the media domain (stored XSS). The filter signs only listed content
types and well-formed dispositions, refuses every other `response-*` name, and counts each
refusal in `envoy_presign_overrides_refused{category}` (docs/configuration.md, "Response overrides").
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
import urllib3
from conftest import ACCESS_KEY, SECRET_KEY, Stats, media_path, poll

from stack import Envoy, env_credentials, filter_config, raw_request

KEY = "overrides/clip ü.mp4"
BODY = b"\x00\x00\x00\x18ftypmp42 not really a video" * 40
OVERRIDES = ["response-content-disposition", "response-content-type"]

REFUSED = [
    # (query, the 400's code = the counter's category)
    ("response-content-type=text%2Fhtml", "invalid_content_type"),
    ("response-content-type=TEXT%2FHTML", "invalid_content_type"),
    ("response-content-type=image%2Fsvg%2Bxml", "invalid_content_type"),
    ("response-content-type=application%2Fxhtml%2Bxml", "invalid_content_type"),
    ("response-content-type=text%2Fxml", "invalid_content_type"),
    ("response-content-type=application%2Fxml", "invalid_content_type"),
    ("response-content-type=text%2Fjavascript", "invalid_content_type"),
    ("response-content-type=video%2Fmp4%3B%20charset%3Dutf-8", "invalid_content_type"),
    ("response-content-disposition=attachment%3B%20filename%3Dclip.html", "invalid_content_disposition"),
    ("response-content-disposition=attachment%3B%20filename%3D%22a%0D%0ASet-Cookie%3A%20x%22",
     "invalid_content_disposition"),
    ("response-content-disposition=form-data", "invalid_content_disposition"),
    ("response-cache-control=no-store", "override_not_allowed"),
    ("response-expires=0", "override_not_allowed"),
    ("Response-Content-Type=video%2Fmp4", "override_not_allowed"),
    ("response%2Dcontent-language=fr", "override_not_allowed"),
]


@pytest.fixture(scope="module", params=["proxy", "redirect"])
def mode_envoy(request, start_envoy, seaweedfs) -> tuple[str, Envoy]:
    seaweedfs.client().put_object(Bucket="media", Key=KEY, Body=BODY, ContentType="video/mp4")
    extra = {"delivery": "redirect"} if request.param == "redirect" else {}
    config = filter_config(seaweedfs.s3_port, allow_query=OVERRIDES, **extra)
    return request.param, start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY))


def fetch(mode: str, envoy: Envoy, path: str) -> urllib3.BaseHTTPResponse:
    """GET through Envoy as a client would: proxy mode answers itself, a redirect is followed."""
    http = urllib3.PoolManager(retries=False)
    resp = http.request("GET", f"http://127.0.0.1:{envoy.port}{path}", redirect=False)
    if mode == "redirect" and resp.status == 307:
        resp = http.request("GET", resp.headers["location"], redirect=False)
    return resp


def test_each_refused_override_answers_400_with_its_category_and_is_counted(mode_envoy):
    """A client cannot have the store serve an object as a page, nor set any response header
    the operator did not allow: each such request gets a 400 naming why, nothing is signed,
    and the counter of its category moves by one."""
    mode, envoy = mode_envoy
    stats = Stats(envoy)
    for q, category in REFUSED:
        resp = raw_request(envoy.port, "GET", f"{media_path(KEY)}?{q}")
        assert resp.status == 400, (mode, q, resp)
        assert resp.headers.get("x-presign-error") == category, (mode, q, resp.headers)
        assert json.loads(resp.body) == {"error": category}, (mode, q, resp.body)
        assert "location" not in resp.headers and b"X-Amz" not in resp.body, (mode, q)
    expected = {f"overrides_refused.category.{c}": sum(1 for _, k in REFUSED if k == c)
                for c in {k for _, k in REFUSED}}
    delta = poll(stats.delta, lambda d: all(d.get(n, 0) == v for n, v in expected.items()))
    assert {n: delta.get(n, 0) for n in expected} == expected, delta
    assert delta.get("requests.outcome.denied", 0) == len(REFUSED), delta
    assert delta.get("urls_signed", 0) == 0 and delta.get("cluster.upstream_rq_total", 0) == 0, delta


def test_allowed_overrides_are_signed_and_the_store_sets_the_headers(mode_envoy):
    """A listed content type and a well-formed download name reach the store signed, and the
    store answers with those headers and the object's bytes."""
    mode, envoy = mode_envoy
    disposition = 'attachment; filename="my clip.mp4"'
    for content_type in ("video/mp4", "application/octet-stream"):
        path = (f"{media_path(KEY)}?response-content-type={urllib.parse.quote(content_type, safe='')}"
                f"&response-content-disposition={urllib.parse.quote(disposition, safe='')}")
        resp = fetch(mode, envoy, path)
        assert resp.status == 200 and resp.data == BODY, (mode, content_type, resp.status)
        assert resp.headers["content-type"] == content_type, (mode, resp.headers)
        assert resp.headers["content-disposition"] == disposition, (mode, resp.headers)
    ext = "attachment; filename*=UTF-8''my%20clip%20%C3%BC.mp4"
    resp = fetch(mode, envoy, f"{media_path(KEY)}?response-content-disposition={urllib.parse.quote(ext, safe='')}")
    assert resp.status == 200 and resp.headers["content-disposition"] == ext, (mode, resp.headers)


def test_an_operator_can_list_a_document_type_on_purpose(start_envoy, seaweedfs):
    """response_content_types replaces the defaults: text/plain, listed, is signed; video/mp4,
    no longer listed, is refused; Envoy's log warns when a listed type renders as a page."""
    seaweedfs.client().put_object(Bucket="media", Key=KEY, Body=BODY, ContentType="video/mp4")
    config = filter_config(seaweedfs.s3_port, allow_query=["response-content-type"],
                           response_content_types=["text/plain", "text/html"])
    envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY))
    resp = fetch("proxy", envoy, f"{media_path(KEY)}?response-content-type=text%2Fplain")
    assert resp.status == 200 and resp.headers["content-type"] == "text/plain", resp.headers
    resp = raw_request(envoy.port, "GET", f"{media_path(KEY)}?response-content-type=video%2Fmp4")
    assert (resp.status, resp.headers.get("x-presign-error")) == (400, "invalid_content_type"), resp
    assert 'origin media signs response-content-type ["text/html"]' in envoy.log_text()
