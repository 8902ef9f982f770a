"""The host command ``envoy-presign-config`` against the filter in real Envoy.

``check`` must accept what Envoy accepts with the lines the filter logs, and refuse what
Envoy refuses with the very line Envoy logs; ``sign`` must print the URL the filter sends
the origin: the exact request target and Host a recording origin receives, and the
presigned path Envoy sends SeaweedFS (which serves it; the printed URL works on its own).
The configurations are aligned (the default), so a request and the command agree within
one signing window.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from conftest import ACCESS_KEY, PATH_LOG, SECRET_KEY, clear_of_window_boundary, forwarded, poll
from test_routing import RecordingOrigin

import config_tool
from stack import ProcessExited, env_credentials, filter_config, raw_request

SESSION_TOKEN = "ToKeN-config-tool/session+token=" + "Zz" * 30
# The tool's URL and Envoy's request within one aligned window (2880 s by default).
WINDOW_MARGIN_SECONDS = 10
# Never through an HTTP(S)_PROXY: the origins are on loopback.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write_config(tmp_path, config: dict):
    path = tmp_path / "filter.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def sign(config_path, method: str, path: str, env: dict[str, str], at: int) -> str:
    """The tool's URL for the request (it must sign: exit 0)."""
    result = config_tool.run("sign", str(config_path), method, path, "--at", str(at), env=env)
    assert result.returncode == 0, result
    assert "bearer credential" in result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def origin():
    with RecordingOrigin() as recording:
        yield recording


# Raw paths as a client sends them, the encodings the filter must canonicalise alike.
PATHS = [("GET", "/media/plain.txt"),
         ("HEAD", "/media/plain.txt"),
         ("GET", "/media/my%20file(1).mp4?versionId=v2&junk=1"),
         ("GET", "/media/a//b/%E2%82%AC+x.bin?X-Amz-Signature=client&versionId=a+b")]


def test_sign_prints_the_target_and_host_the_origin_receives(start_envoy, origin, tmp_path):
    config = filter_config(origin.port)
    env = env_credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    config_path = write_config(tmp_path, config)
    envoy = start_envoy(config, env, origin_port=origin.port)
    clear_of_window_boundary(WINDOW_MARGIN_SECONDS)
    for method, path in PATHS:
        before = len(origin.snapshot())
        at = int(time.time())
        resp = raw_request(envoy.port, method, path)
        assert resp.status == 200, (path, resp)
        (got,) = origin.snapshot()[before:]
        url = urllib.parse.urlsplit(sign(config_path, method, path, env, at))
        assert got.method == method
        assert got.target == f"{url.path}?{url.query}", path
        assert got.headers["host"] == url.netloc
        assert got.query["X-Amz-Security-Token"] == SESSION_TOKEN


def test_signed_url_is_what_envoy_sends_seaweedfs_and_works_alone(start_envoy, seaweedfs, corpus, tmp_path):
    key = next(k for k in sorted(corpus.objects) if " " in k and "%" not in k and "//" not in k)
    path = "/media/" + urllib.parse.quote(key, safe="/")
    config = filter_config(seaweedfs.s3_port)
    env = env_credentials(ACCESS_KEY, SECRET_KEY)
    config_path = write_config(tmp_path, config)
    envoy = start_envoy(config, env, extra_substitutions=PATH_LOG)
    clear_of_window_boundary(WINDOW_MARGIN_SECONDS)
    at = int(time.time())
    resp = raw_request(envoy.port, "GET", path)
    assert (resp.status, resp.body) == (200, corpus.objects[key])
    (sent,) = forwarded(envoy, 1)
    url = sign(config_path, "GET", path, env, at)
    assert url == f"{seaweedfs.endpoint}{sent.path}"
    with NO_PROXY.open(url, timeout=10) as direct:
        assert (direct.status, direct.read()) == (200, corpus.objects[key])


def test_check_prints_the_lines_envoy_logs(start_envoy, seaweedfs, tmp_path):
    config = filter_config(seaweedfs.s3_port)
    env = env_credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    result = config_tool.run("check", str(write_config(tmp_path, config)), env=env)
    assert result.returncode == 0, result
    assert result.stdout.startswith("OK ")
    assert "  origin media: /media/ (any host) -> " in result.stdout
    logged = [line.split("] ", 1)[1] for line in result.stdout.splitlines() if line.startswith("  [")]
    assert len(logged) == 2 and logged[0].startswith("envoy-presign: signing with access key " + ACCESS_KEY)
    envoy = start_envoy(config, env)
    # Envoy flushes its log every 100 ms: wait for the lines rather than read once.
    envoy_log = poll(envoy.log_text, lambda text: all(line in text for line in logged))
    for line in logged:
        assert line in envoy_log, line
    for secret in (SECRET_KEY, SESSION_TOKEN):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("overrides,field", [
    ({"expires_in": 1}, "origins[0].expires_in"),
    ({"bucket": "Bad_Bucket!"}, "origins[0].bucket"),
    ({"endpoint": "ftp://x"}, "origins[0].endpoint"),
])
def test_check_refuses_with_the_line_envoy_logs(start_envoy, seaweedfs, tmp_path, overrides, field):
    config = filter_config(seaweedfs.s3_port, **overrides)
    env = env_credentials(ACCESS_KEY, SECRET_KEY)
    result = config_tool.run("check", str(write_config(tmp_path, config)), env=env)
    assert (result.returncode, result.stdout) == (1, ""), result
    line = result.stderr.strip()
    assert line.startswith(f"envoy-presign: invalid configuration: {field}: "), line
    envoy = start_envoy(config, env, start=False)
    with pytest.raises(ProcessExited) as excinfo:
        envoy.start()
    assert line in excinfo.value.log
    assert SECRET_KEY not in result.stderr


def test_sign_prints_the_local_reply_envoy_sends(envoy, tmp_path):
    """The session's Envoy (conftest) answers a ``..`` segment and a PUT itself; the tool
    names the same status and code."""
    config_path = write_config(tmp_path, envoy.filter_config)
    env = env_credentials(ACCESS_KEY, SECRET_KEY)
    for method, path in [("GET", "/media/a/../b"), ("PUT", "/media/x"), ("GET", "/media/%zz")]:
        resp = raw_request(envoy.port, method, path)
        result = config_tool.run("sign", str(config_path), method, path, env=env)
        assert result.returncode == 1, result
        code = resp.headers["x-presign-error"]
        assert result.stdout.startswith(f"{resp.status} {code} (origin media, category {code})"), result


@pytest.mark.parametrize("argv,position", [
    ([b"\xff"], 1),
    ([b"check", b"conf\xe9.json"], 2),
    ([b"sign", b"filter.json", b"GET", b"/media/\x80a.bin"], 4),
    ([b"sign", b"filter.json", b"GET", b"/media/a", b"--host", b"h\xc3"], 6),
], ids=["command", "check-path", "sign-path", "host"])
def test_a_non_utf8_argument_exits_2_naming_it_without_a_panic(tmp_path, argv: list[bytes], position: int):
    """The built binary given an argument that is not UTF-8 (Rust's ``std::env::args`` would
    panic, exit 101): exit 2 with a usage error naming the argument's position and showing it
    lossily, and the usage text; never a panic. The configuration's path is no exception."""
    write_config(tmp_path, filter_config(9))
    tool = config_tool.build()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run([bytes(tool), *argv], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    stderr = result.stderr.decode("utf-8")  # the tool's own output is UTF-8 whatever it was given
    assert result.returncode == 2, (result.returncode, stderr)
    assert result.stdout == b"", result
    assert "panicked" not in stderr and "RUST_BACKTRACE" not in stderr, stderr
    first = stderr.splitlines()[0]
    shown = argv[position - 1].decode("utf-8", errors="replace")
    assert first.startswith(f'envoy-presign-config: argument {position} is not UTF-8: "{shown}"'), first
    assert "usage: envoy-presign-config check <config.json>" in stderr, stderr
