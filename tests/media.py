"""Media fixtures and readers for test_media.py: the files ffmpeg makes at test time (an
H.264/AAC MP4 with and without faststart, HLS with relative and root-relative segment
URIs, DASH), and what the tests read back: ffmpeg/ffprobe runs, the MP4's top-level
atoms, Envoy's media access log, the exchanges a RecordingRelay carried, and a
screenshot's pixels (a PNG decoded with zlib, no image library).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from stack import access_log_format

# Where the renditions live in the bucket: a space and a non-ASCII character in every key.
PREFIX = "videos/my clip ü/"
FASTSTART_KEY = PREFIX + "faststart.mp4"
MOOV_AT_END_KEY = PREFIX + "moov-at-end.mp4"
HLS_DIR = PREFIX + "hls/"
HLS_ROOT_DIR = PREFIX + "hls-root/"
DASH_DIR = PREFIX + "dash/"
PLAYLIST = "index.m3u8"
MANIFEST = "manifest.mpd"

DURATION = 60  # seconds of source
SEGMENT_SECONDS = 4  # HLS and DASH segment length (the GOP is 2 s, so cuts land on it)
WIDTH, HEIGHT = 320, 180

CONTENT_TYPES = {".mp4": "video/mp4", ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t",
                 ".mpd": "application/dash+xml", ".m4s": "video/iso.segment"}


def url_path(key: str) -> str:
    """``/media/`` + the key percent-encoded (UTF-8), '/' kept: what a player puts on the wire."""
    return "/media/" + urllib.parse.quote(key, safe="/")


def key_of(path: str) -> str:
    """The object key of a request target under ``/media/``: Envoy's route prefix in front of
    a client's request, the bucket in front of a presigned one (path addressing)."""
    return urllib.parse.unquote(path.partition("?")[0].removeprefix("/media/"))


# ---------------------------------------------------------------------------
# ffmpeg / ffprobe
# ---------------------------------------------------------------------------


def ffmpeg_binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        import pytest

        pytest.fail(f"{name} is missing: `make setup` installs Debian's ffmpeg (make media-tools)", pytrace=False)
    return found


def run(argv: list[str], timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a tool to completion (stdin closed), output captured as text."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          errors="replace", cwd=cwd)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def ffprobe(target: str, user_agent: str | None = None) -> dict:
    """ffprobe's JSON (format and streams) of a file or URL; AssertionError if it fails."""
    argv = [ffmpeg_binary("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    if user_agent:
        argv += ["-user_agent", user_agent]
    result = run(argv + [target])
    assert result.returncode == 0, f"ffprobe {target} exited {result.returncode}:\n{tail(result.stderr)}"
    return json.loads(result.stdout)


def ffmpeg_read(url: str, user_agent: str, input_args: list[str] = (), output_args: list[str] = ("-c", "copy"),
                timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """``ffmpeg [input_args] -i url [output_args] -f null -`` as a player reading the whole
    input would; returns the run and the last ``-progress`` block (frame, out_time_us, ...)."""
    argv = [ffmpeg_binary("ffmpeg"), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "warning",
            "-progress", "pipe:1", "-user_agent", user_agent, *input_args, "-i", url,
            "-map", "0", *output_args, "-f", "null", "-"]
    result = run(argv, timeout=timeout)
    blocks = result.stdout.split("progress=")
    last: dict[str, str] = {}
    for block in blocks[:-1] if len(blocks) > 1 else []:
        values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if values:
            last = values
    return result, last


def out_seconds(progress: dict[str, str]) -> float:
    """The output's timestamp at the end of an ffmpeg run, in seconds (0 if none)."""
    value = progress.get("out_time_us", "N/A")
    return int(value) / 1e6 if value.lstrip("-").isdigit() else 0.0


# ---------------------------------------------------------------------------
# The renditions
# ---------------------------------------------------------------------------


def top_level_atoms(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of an MP4's top-level boxes."""
    atoms = []
    with open(path, "rb") as file:
        total = path.stat().st_size
        offset = 0
        while offset < total:
            file.seek(offset)
            size, kind = struct.unpack(">I4s", file.read(8))
            if size == 1:
                size = struct.unpack(">Q", file.read(8))[0]
            elif size == 0:
                size = total - offset
            atoms.append((kind.decode("latin-1"), offset, size))
            offset += size
    return atoms


def playlist_uris(text: str) -> list[str]:
    """The segment URI lines of an HLS media playlist."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass
class Media:
    """The generated renditions: local files and their keys in the bucket."""

    dir: Path
    files: dict[str, Path] = field(default_factory=dict)  # key -> local file
    duration: float = 0.0  # of the source MP4, per ffprobe
    moov_offset: int = 0  # of the moov-at-end MP4
    mdat: tuple[int, int] = (0, 0)  # (offset, size) of the moov-at-end MP4's mdat
    _frames: dict[float, list] = field(default_factory=dict, repr=False)

    def keys_under(self, directory: str, suffix: str = "") -> list[str]:
        return sorted(k for k in self.files if k.startswith(directory) and k.endswith(suffix))

    def frame(self, seconds: float) -> list[tuple[int, int, int]]:
        """The faststart MP4's picture at ``seconds`` as ffmpeg decodes it: RGB pixels, row by row."""
        if seconds not in self._frames:
            self._frames[seconds] = self._decode_frame(seconds)
        return self._frames[seconds]

    def _decode_frame(self, seconds: float) -> list[tuple[int, int, int]]:
        result = subprocess.run([ffmpeg_binary("ffmpeg"), "-v", "error", "-ss", str(seconds),
                                 "-i", str(self.files[FASTSTART_KEY]), "-frames:v", "1", "-f", "rawvideo",
                                 "-pix_fmt", "rgb24", "-"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert result.returncode == 0 and len(result.stdout) == WIDTH * HEIGHT * 3, result.stderr[-2000:]
        data = result.stdout
        return [tuple(data[i:i + 3]) for i in range(0, len(data), 3)]

    def segments(self, directory: str) -> list[str]:
        """Every key of a rendition but its playlist or manifest: what a full read fetches."""
        return [k for k in self.keys_under(directory) if not k.endswith((PLAYLIST, MANIFEST))]


def make_media(workdir: Path) -> Media:
    """Encode the 60 s source once (320x180 testsrc + 440 Hz sine, x264 ultrafast, AAC, 2 s
    GOP) and remux it into the other renditions (-c copy): a few seconds of CPU."""
    ffmpeg = ffmpeg_binary("ffmpeg")
    media = Media(workdir)

    def make(*args: str, cwd: Path = workdir) -> None:
        result = run([ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], timeout=300, cwd=cwd)
        assert result.returncode == 0, f"ffmpeg {' '.join(args)}:\n{tail(result.stderr)}"

    fast, end = workdir / "faststart.mp4", workdir / "moov-at-end.mp4"
    make("-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate=25:duration={DURATION}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={DURATION}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "50", "-keyint_min", "50",
         "-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", str(fast))
    make("-i", str(fast), "-map", "0", "-c", "copy", str(end))  # no +faststart: moov written last
    fast_atoms, end_atoms = [a[0] for a in top_level_atoms(fast)], top_level_atoms(end)
    assert fast_atoms.index("moov") < fast_atoms.index("mdat"), fast_atoms
    (moov,) = [a for a in end_atoms if a[0] == "moov"]
    (mdat,) = [a for a in end_atoms if a[0] == "mdat"]
    assert end_atoms[-1] == moov and mdat[1] < moov[1], end_atoms
    media.moov_offset, media.mdat = moov[1], (mdat[1], mdat[2])
    media.files[FASTSTART_KEY], media.files[MOOV_AT_END_KEY] = fast, end

    hls_args = ["-i", str(fast), "-map", "0", "-c", "copy", "-f", "hls", "-hls_time", str(SEGMENT_SECONDS),
                "-hls_playlist_type", "vod", "-hls_segment_filename", "seg_%03d.ts"]
    for directory, extra in ((HLS_DIR, []), (HLS_ROOT_DIR, ["-hls_base_url", url_path(HLS_ROOT_DIR)])):
        local = workdir / directory.removeprefix(PREFIX)
        local.mkdir()
        make(*hls_args, *extra, PLAYLIST, cwd=local)
        for file in local.iterdir():
            media.files[directory + file.name] = file
        # The URI style each playlist is there for: "seg_000.ts", or "/media/videos/...".
        uris = playlist_uris((local / PLAYLIST).read_text())
        base = extra[1] if extra else ""
        assert uris == [base + name for name in sorted(f.name for f in local.glob("*.ts"))], uris
    local = workdir / DASH_DIR.removeprefix(PREFIX)
    local.mkdir()
    make("-i", str(fast), "-map", "0", "-c", "copy", "-f", "dash", "-seg_duration", str(SEGMENT_SECONDS),
         "-use_template", "1", "-use_timeline", "1", "-init_seg_name", "init-$RepresentationID$.m4s",
         "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s", str(local / MANIFEST))
    for file in local.iterdir():
        media.files[DASH_DIR + file.name] = file
    media.duration = float(ffprobe(str(fast))["format"]["duration"])
    return media


def upload(media: Media, client, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def put(item: tuple[str, Path]) -> None:
        key, path = item
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                          ContentType=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, media.files.items()))


# ---------------------------------------------------------------------------
# What Envoy and the relay saw
# ---------------------------------------------------------------------------

# A test-only access log format: tab-separated, with the client's Range and User-Agent (each
# test tags its client's User-Agent) and :path (the presigned URL in proxy mode).
MEDIA_LOG = access_log_format(
    "%START_TIME(%s.%3f)%\t%REQ(:METHOD)%\t%RESPONSE_CODE%\t%RESPONSE_CODE_DETAILS%\t%UPSTREAM_HOST%\t"
    "%REQ(RANGE)%\t%REQ(USER-AGENT)%\t%REQ(:PATH)%\n")


@dataclass(frozen=True)
class Logged:
    """One MEDIA_LOG line."""

    method: str
    status: int
    details: str  # %RESPONSE_CODE_DETAILS%: via_upstream, or downstream_remote_disconnect when
    #               the client hung up mid-body (a player that read what it needed)
    upstream: str  # %UPSTREAM_HOST%: "-" for Envoy's own replies (the filter's 307s)
    range: str  # "-" without one
    user_agent: str
    path: str

    @property
    def key(self) -> str:
        return key_of(self.path)

    @property
    def from_origin(self) -> bool:
        """The status is the origin's: Envoy forwarded the request and relayed the answer.
        A request the client dropped before the origin's answer came is logged with status 0
        (no response), details downstream_remote_disconnect and the upstream it went to: it
        has no answer, so no status from the origin (Chromium does that when it changes its
        mind about what to buffer)."""
        return self.upstream != "-" and self.status != 0 and \
            self.details in ("via_upstream", "downstream_remote_disconnect")


def logged(envoy, user_agent: str) -> list[Logged]:
    """The MEDIA_LOG lines of requests sent with ``user_agent`` (complete lines only)."""
    found = []
    for line in envoy.access_log_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        _, method, status, details, upstream, range_, agent, path = line.rstrip("\n").split("\t")
        if agent == user_agent:
            found.append(Logged(method, int(status), details, upstream, range_, agent, path))
    return found


@dataclass(frozen=True)
class Exchange:
    """One request through the relay and the head of its answer (status None: no answer
    came back before the connection closed)."""

    method: str
    target: str
    headers: dict[str, str]
    status: int | None
    response_headers: dict[str, str]

    @property
    def key(self) -> str:
        return key_of(self.target)


def _parse_head(stream: bytes, at: int) -> tuple[str, dict[str, str], int] | None:
    """(start line, lower-case headers, offset after the head) of the message at ``at``."""
    end = stream.find(b"\r\n\r\n", at)
    if end < 0:
        return None
    lines = stream[at:end].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, end + 4


def _chunked_end(stream: bytes, at: int) -> int | None:
    while True:
        line_end = stream.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(stream[at:line_end].split(b";")[0], 16)
        at = line_end + 2
        if size == 0:
            trailer_end = stream.find(b"\r\n\r\n", at - 2)
            return None if trailer_end < 0 else trailer_end + 4
        at += size + 2


def relay_exchanges(relay) -> list[Exchange]:
    """Every request through ``relay`` paired with the answer's head: request and response
    heads are parsed in order on each connection (bodies skipped by Content-Length or
    chunking, none after HEAD, 204 or 304)."""
    with relay._lock:
        connections = [(bytes(s), bytes(r)) for s, r in zip(relay.sent, relay.received)]
    found = []
    for sent, received in connections:
        requests, at = [], 0
        while (head := _parse_head(sent, at)) is not None:
            line, headers, at = head
            method, target = line.split(" ")[:2]
            requests.append((method, target, headers))
            at += int(headers.get("content-length", 0))
        at = 0
        for method, target, headers in requests:
            head = _parse_head(received, at) if at is not None else None
            if head is None:
                found.append(Exchange(method, target, headers, None, {}))
                at = None
                continue
            line, response_headers, at = head
            status = int(line.split(" ")[1])
            if method == "HEAD" or status in (204, 304) or status < 200:
                pass
            elif "chunked" in response_headers.get("transfer-encoding", "").lower():
                at = _chunked_end(received, at)
            elif "content-length" in response_headers:
                at += int(response_headers["content-length"])
            else:
                at = None  # read to close: nothing can follow
            found.append(Exchange(method, target, headers, status, response_headers))
    return found


def exchanges_of(relay, user_agent: str) -> list[Exchange]:
    return [e for e in relay_exchanges(relay) if e.headers.get("user-agent") == user_agent]


# ---------------------------------------------------------------------------
# Screenshots
# ---------------------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, pixels as RGB(A) tuples) of an 8-bit, non-interlaced RGB or RGBA PNG
    (what Chromium's Page.captureScreenshot writes), decoded with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    at, idat, header = 8, bytearray(), None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunk = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.extend(chunk)
        at += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    previous = bytearray(stride)
    pixels = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + a) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + b) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels.extend(tuple(row[i:i + bpp]) for i in range(0, stride, bpp))
        previous = row
    return width, height, pixels


def image_spread(data: bytes) -> tuple[int, float]:
    """(distinct colours, standard deviation of the luma) of a PNG: a blank or uniform
    image has a handful of colours and a deviation near 0, a video frame many and a lot."""
    _, _, pixels = png_pixels(data)
    luma = [(299 * p[0] + 587 * p[1] + 114 * p[2]) / 1000 for p in pixels]
    mean = sum(luma) / len(luma)
    deviation = (sum((v - mean) ** 2 for v in luma) / len(luma)) ** 0.5
    return len({p[:3] for p in pixels}), deviation


def difference(png: bytes, frame: list[tuple[int, int, int]]) -> float:
    """Mean absolute difference per colour channel (0-255) between a screenshot and a
    decoded frame of the same size: ~0.5 for the same picture as Chromium paints it."""
    width, height, pixels = png_pixels(png)
    assert (width, height) == (WIDTH, HEIGHT) and len(frame) == len(pixels), (width, height, len(frame))
    return sum(abs(a - b) for p, q in zip(pixels, frame) for a, b in zip(p[:3], q)) / (3 * len(pixels))
