"""A headless Chromium driven over the DevTools protocol, and the small servers the browser
tests put around it (test_redirect.py, test_media.py).

* ``Chromium``: Debian's chromium, headless, on a throw-away profile, its DevTools port
  read from the profile's DevToolsActivePort; ``first_page()`` / ``new_tab()`` give a
  ``DevTools`` connection to a page.
* ``DevTools``: calls (``call``, ``evaluate``) over a page's websocket; the events that
  arrive meanwhile are kept in ``events`` (after ``Log.enable``, ``Network.enable``, ...).
* ``page_server``: the page a test loads, from another origin (another port) than the
  media it plays.
* ``RecordingRelay``: a TCP relay standing for the public endpoint of a redirect origin,
  keeping what went through it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# The DevTools HTTP endpoint is on loopback: never through an HTTP(S)_PROXY.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RecordingRelay:
    """A TCP relay on a loopback port standing for the public endpoint (a CDN, a load
    balancer): bytes pass unchanged both ways (the Host the URL was signed for included),
    and what the client sent is kept, to read the requests that reached the origin."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.sent: list[bytearray] = []
        self.received: list[bytearray] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            sent, received = bytearray(), bytearray()
            with self._lock:
                self.sent.append(sent)
                self.received.append(received)
            for src, dst, log in ((client, upstream, sent), (upstream, client, received)):
                threading.Thread(target=self._pump, args=(src, dst, log), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, log: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    log.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """(request line, lower-case headers) of every request head the clients sent."""
        with self._lock:
            streams = [bytes(s) for s in self.sent]
        found = []
        for stream in streams:
            for head in stream.split(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                if not lines[0].startswith(("GET ", "HEAD ")):
                    continue
                headers = dict((n.strip().lower(), v.strip()) for n, _, v in (l.partition(":") for l in lines[1:]))
                found.append((lines[0], headers))
        return found

    def statuses(self) -> list[int]:
        with self._lock:
            streams = [bytes(s) for s in self.received]
        return [int(line.split(b" ")[1]) for s in streams for line in s.split(b"\r\n")
                if line.startswith(b"HTTP/1.1 ")]

    def close(self) -> None:
        self._stop.set()
        self._server.close()


class DevTools:
    """The DevTools protocol of one page over its websocket. Events (messages without an
    id) that arrive while a call waits for its answer are appended to ``events``."""

    def __init__(self, url: str):
        import websocket  # websocket-client, pinned in requirements-dev.txt

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.ws.close()


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if not found:
        pytest.fail("chromium is missing: `make setup` installs Debian's package (make browser-tools)",
                    pytrace=False)
    return found


class Chromium:
    """Debian's chromium, headless, with its DevTools on a port of its choosing (read back
    from the profile's DevToolsActivePort); stopped by its own pid (``stop``)."""

    def __init__(self, workdir: Path, window_size: str = "400,300"):
        self.profile = Path(workdir) / "chromium-profile"
        self.log_path = Path(workdir) / "chromium.log"
        self.window_size = window_size
        self.proc: subprocess.Popen | None = None
        self.debug_port: int | None = None

    def start(self) -> "Chromium":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
                 "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                 f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
                 f"--window-size={self.window_size}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"

        def port() -> int | None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            text = port_file.read_text() if port_file.exists() else ""
            return int(text.split()[0]) if text.split() else None

        deadline = time.monotonic() + 30
        while (found := port()) is None:
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("chromium wrote no DevToolsActivePort within 30 s")
            time.sleep(0.1)
        self.debug_port = found
        return self

    def _json(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"http://127.0.0.1:{self.debug_port}{path}", method=method)
        with _NO_PROXY.open(request, timeout=10) as resp:
            body = resp.read()
        try:
            return json.loads(body)
        except ValueError:
            return body.decode(errors="replace")

    def first_page(self) -> DevTools:
        """The page the browser opened at start (about:blank)."""
        target = next(t for t in self._json("/json/list") if t["type"] == "page")
        return DevTools(target["webSocketDebuggerUrl"])

    def new_tab(self) -> tuple[DevTools, str]:
        """A new about:blank tab: its DevTools and its target id (for ``close_tab``)."""
        target = self._json("/json/new?about:blank", method="PUT")
        return DevTools(target["webSocketDebuggerUrl"]), target["id"]

    def close_tab(self, target_id: str) -> None:
        self._json(f"/json/close/{target_id}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def page_server(pages: str | dict[str, str]) -> ThreadingHTTPServer:
    """An HTTP server on a loopback port of its own (so: another origin than the media)
    serving ``pages``: one HTML page for every path, or a dict path -> HTML (404 for
    other paths; the dict may be filled after the server started)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            html = pages if isinstance(pages, str) else pages.get(self.path)
            if html is None:
                self.send_error(404)
                return
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
