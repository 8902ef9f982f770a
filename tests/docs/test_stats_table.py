"""The "Statistics" table of docs/observability.md lists exactly the stats the filter defines, and
the table of Envoy's own per-origin series exactly those of envoy/envoy.yaml's stats access
loggers: same names, same type, same tags (the Prometheus form each row gives), and every tag
value the code spells out (an `outcome`, a `category`, a credential refresh `result`...) named in
the row.

The filter's stats are read from the Rust source, not from a build: every non-test file of src/
(REFRESH_RESULTS and the other value lists may live in any module), comment lines left out.
Names reach Envoy in two ways, both read here:

- through `Definer` in src/metrics.rs, whose `format!("envoy_presign.{metric}.origin.{}…")`
  gives every such stat the `origin` tag: `d.counter("name")`, `d.labelled("name", "tag",
  VALUES)` (counters), `d.def(MetricKind::Gauge, "name", None | Some(("tag", value)))`;
- directly, `backend.define(MetricKind::X, "envoy_presign.name")` or with
  `&format!("envoy_presign.name.tag.{var}…")`, with no `origin` tag.

Tag values are resolved where the code names them: a string literal, a `const NAME: [&str; N]`
array, `Type::ALL.map(Type::label)` (the literals of `fn label`), or a `{var}` bound by
`ARRAY.map(|var| …)`; values known only at run time (the configured source) are not checked.
Anything the test cannot read fails it rather than being skipped: a new `Definer` method, or an
`"envoy_presign.…"` literal outside a recognised call in a file that names a `MetricKind`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from docs_text import DOCS, REPO_ROOT

SRC = REPO_ROOT / "src"
OBSERVABILITY = DOCS / "observability.md"
ENVOY_YAML = REPO_ROOT / "envoy" / "envoy.yaml"

FILTER_TABLE = "Statistics"
ENVOY_TABLE = "Envoy's per-origin series"
PREFIX = "envoy_presign"
KINDS = {"Counter", "Gauge", "Histogram"}
# Methods of Definer this test knows: the three that name stats, and one without a name argument.
DEFINER_METHODS = {"def", "counter", "labelled", "hostcalls"}


@dataclass
class Stat:
    kind: str
    tags: set[str]
    values: dict[str, set[str]] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)


# --- reading the Rust source -------------------------------------------------------------------

def rust_sources() -> dict[Path, str]:
    """Every non-test .rs file under src/, its full-line comments removed."""
    out = {}
    for path in sorted(SRC.rglob("*.rs")):
        if path.name.endswith("_tests.rs") or path.name in {"tests.rs", "testing.rs"}:
            continue
        lines = path.read_text().splitlines()
        out[path] = "\n".join("" if ln.lstrip().startswith("//") else ln for ln in lines)
    return out


def closing(text: str, start: int) -> int:
    """Index just past the bracket closing the one at ``start``, skipping string literals."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack, i = [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in pairs:
            stack.append(pairs[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    raise AssertionError(f"unbalanced {text[start]!r} at {start}")


def call_args(text: str, paren: int) -> list[str]:
    """The top-level, comma-separated arguments of the call whose ``(`` is at ``paren``."""
    inner = text[paren + 1:closing(text, paren) - 1]
    args, depth, cur, i = [], 0, "", 0
    while i < len(inner):
        c = inner[i]
        if c == '"':
            end = i + 1
            while inner[end] != '"':
                end += 2 if inner[end] == "\\" else 1
            cur += inner[i:end + 1]
            i = end + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        args.append(cur.strip())
    return args


def literal(expr: str) -> str | None:
    m = re.fullmatch(r'"([^"\\]*)"', expr.strip())
    return m.group(1) if m else None


def kind_of(expr: str) -> str | None:
    m = re.fullmatch(r"(?:MetricKind::)?(\w+)", expr.strip())
    return m.group(1) if m and m.group(1) in KINDS else None


def const_arrays(sources: dict[Path, str]) -> dict[str, list[str]]:
    """``const NAME: [&str; N] = [...]`` anywhere in src/."""
    out = {}
    for text in sources.values():
        for m in re.finditer(r"\bconst\s+(\w+)\s*:\s*\[\s*&(?:'static\s+)?str\s*;\s*\d+\s*\]\s*=\s*\[",
                             text):
            body = text[m.end() - 1:closing(text, m.end() - 1)]
            out[m.group(1)] = re.findall(r'"([^"\\]*)"', body)
    return out


def label_fns(sources: dict[Path, str]) -> dict[str, list[str]]:
    """Per type, the string literals its ``fn label`` maps variants onto (``Type::V => "v"``)."""
    out: dict[str, list[str]] = {}
    for text in sources.values():
        for m in re.finditer(r"\bfn\s+label\s*\([^)]*\)[^{]*\{", text):
            body = text[m.end() - 1:closing(text, m.end() - 1)]
            for typ, value in re.findall(r'(\w+)::\w+(?:\([^)]*\))?\s*=>\s*"([^"\\]*)"', body):
                out.setdefault(typ, []).append(value)
    return out


class Reader:
    def __init__(self) -> None:
        self.sources = rust_sources()
        self.consts = const_arrays(self.sources)
        self.labels = label_fns(self.sources)
        self.stats: dict[str, Stat] = {}
        self.unread: list[str] = []
        self.read_names: set[str] = set()

    def values(self, expr: str, text: str, pos: int) -> set[str] | None:
        """The values an argument expression stands for, or None if only known at run time."""
        expr = expr.strip().lstrip("&").strip()
        if (lit := literal(expr)) is not None:
            return {lit}
        if expr in self.consts:
            return set(self.consts[expr])
        m = re.fullmatch(r"(\w+)::ALL\.map\(\s*\1::label\s*\)", expr)
        if m:
            assert m.group(1) in self.labels, f"no fn label for {m.group(1)}"
            return set(self.labels[m.group(1)])
        m = re.fullmatch(r"\{(\w+)\}", expr)
        if m:  # a format! placeholder: the nearest `ARRAY.map(|var|` before the call binds it
            binds = list(re.finditer(rf"(\w+)\.map\(\s*\|\s*{m.group(1)}\s*\|", text[:pos]))
            if binds and binds[-1].group(1) in self.consts:
                return set(self.consts[binds[-1].group(1)])
        return None

    def add(self, name: str, kind: str, tags: dict[str, set[str] | None], where: str) -> None:
        stat = self.stats.setdefault(name, Stat(kind, set(tags)))
        assert stat.kind == kind, f"{name} defined as {stat.kind} and {kind} ({where})"
        assert stat.tags == set(tags), f"{name} defined with tags {stat.tags} and {set(tags)} ({where})"
        for tag, vals in tags.items():
            if vals:
                stat.values.setdefault(tag, set()).update(vals)
        stat.where.append(where)

    def read(self) -> dict[str, Stat]:
        definer_found = False
        for path, text in self.sources.items():
            rel = path.relative_to(REPO_ROOT).as_posix()
            impl = re.search(r"\bimpl\b[^{;]*\bDefiner\b[^{;]*\{", text)
            if impl:
                definer_found = True
                body = text[impl.end() - 1:closing(text, impl.end() - 1)]
                methods = set(re.findall(r"\bfn\s+(\w+)", body))
                assert methods <= DEFINER_METHODS, (
                    f"{rel}: Definer has methods {sorted(methods - DEFINER_METHODS)} this test "
                    "does not read: teach tests/docs/test_stats_table.py how they name stats")
                naming = re.findall(r'"(envoy_presign\.\{metric\}[^"]*)"', body)
                assert naming and all(n.startswith("envoy_presign.{metric}.origin.{") for n in naming), (
                    f"{rel}: Definer no longer names stats envoy_presign.<metric>.origin.<origin>…: {naming}")
            for m in re.finditer(r"\.(counter|labelled|def|define)\s*\(", text):
                method, paren = m.group(1), m.end() - 1
                args = call_args(text, paren)
                where = f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
                self.read_call(method, args, text, m.start(), where)
        assert definer_found, "no `impl Definer` in src/: how are per-origin stats named now?"
        # Every stat name spelled out where stats can be defined (a file that names a
        # MetricKind: no stat without one) was read by one of the calls above.
        for path, text in self.sources.items():
            if "MetricKind" not in text:
                continue  # shared-data keys (envoy_presign.cache.…) are not stats
            for lit in re.findall(r'"(envoy_presign\.[^"]*)"', text):
                if "{metric}" not in lit and lit not in self.read_names:
                    self.unread.append(f"{path.relative_to(REPO_ROOT)}: {lit}")
        assert not self.unread, f"stat names outside a call this test reads: {self.unread}"
        return self.stats

    def read_call(self, method: str, args: list[str], text: str, pos: int, where: str) -> None:
        if method == "counter":
            if len(args) == 1 and (name := literal(args[0])) is not None:
                self.add(name, "Counter", {"origin": None}, where)
        elif method == "labelled":
            if len(args) == 3 and (name := literal(args[0])) is not None:
                tag = literal(args[1])
                assert tag, f"{where}: labelled() with a tag name that is not a literal: {args}"
                self.add(name, "Counter", {"origin": None, tag: self.values(args[2], text, pos)}, where)
        elif method == "def":
            if len(args) == 3 and (name := literal(args[1])) is not None:
                kind = kind_of(args[0])
                assert kind, f"{where}: def() of {name} with a kind this test cannot read: {args[0]}"
                tags: dict[str, set[str] | None] = {"origin": None}
                if args[2] != "None":
                    m = re.fullmatch(r'Some\(\(\s*"(\w+)"\s*,(.*)\)\)', args[2], re.S)
                    assert m, f"{where}: def() of {name} with tags this test cannot read: {args[2]}"
                    tags[m.group(1)] = self.values(m.group(2), text, pos)
                self.add(name, kind, tags, where)
        elif method == "define" and len(args) == 2:
            m = re.fullmatch(r'&?\s*(?:format!\(\s*)?"(envoy_presign\.[^"]*)"\s*,?\s*\)?', args[1], re.S)
            if not m:
                return  # a name built elsewhere (Definer::def's `&name`), read through Definer
            full = m.group(1)
            self.read_names.add(full)
            kind = kind_of(args[0])
            assert kind, f"{where}: define() of {full} with a kind this test cannot read: {args[0]}"
            parts = full.split(".")
            assert len(parts) % 2 == 0 and re.fullmatch(r"[a-z0-9_]+", parts[1]), (
                f"{where}: {full} is not envoy_presign.<name>[.<tag>.<value>]…")
            tags = {parts[i]: self.values(parts[i + 1], text, pos) for i in range(2, len(parts), 2)}
            self.add(parts[1], kind, tags, where)


def code_stats() -> dict[str, Stat]:
    return Reader().read()


# --- reading the docs --------------------------------------------------------------------------

@dataclass
class Row:
    name: str
    kind: str
    prometheus: str
    tags: set[str]
    description: str


def table_under(heading: str) -> list[Row]:
    """The ``Name | Type | Description`` table that follows ``### heading``."""
    text = re.sub(r"^```.*?^```", "", OBSERVABILITY.read_text(), flags=re.M | re.S)
    m = re.search(rf"^### {re.escape(heading)}\s*$", text, re.M)
    assert m, f"no '### {heading}' heading in {OBSERVABILITY.relative_to(REPO_ROOT)}"
    lines = text[m.end():].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    table = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        table.append([c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]])
    assert table[0] == ["Name", "Type", "Description"], table[0]
    assert set("".join(table[1])) <= set("-: "), table[1]
    rows = []
    for cells in table[2:]:
        assert len(cells) == 3, cells
        name = re.fullmatch(r"`([a-z0-9_]+)`", cells[0])
        assert name, f"Name cell is not one `stat_name`: {cells[0]}"
        prom = re.search(r"`([a-z0-9_]+)(?:\{([^}`]*)\})?`", cells[2])
        assert prom and prom.group(1).startswith("envoy_"), (
            f"{cells[0]}: the description does not start with its Prometheus series: {cells[2][:80]}")
        tags = {t.split("=")[0].strip() for t in (prom.group(2) or "").split(",") if t.strip()}
        rows.append(Row(name.group(1), cells[1], prom.group(1), tags, cells[2]))
    return rows


def check(rows: list[Row], defined: dict[str, Stat], prometheus_prefix: str, source: str) -> None:
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), f"rows repeated: {sorted({n for n in names if names.count(n) > 1})}"
    problems = []
    for name in sorted(set(defined) - set(names)):
        problems.append(f"{name}: defined in {source} ({defined[name].where[0]}) but has no row")
    for name in sorted(set(names) - set(defined)):
        problems.append(f"{name}: has a row but {source} does not define it")
    for row in rows:
        stat = defined.get(row.name)
        if stat is None:
            continue
        if row.kind.split()[0].capitalize() != stat.kind:
            problems.append(f"{row.name}: row says {row.kind}, {source} defines a {stat.kind}")
        if row.prometheus != f"{prometheus_prefix}_{row.name}":
            problems.append(f"{row.name}: Prometheus name {row.prometheus}, "
                            f"Envoy shows {prometheus_prefix}_{row.name}")
        if row.tags != stat.tags:
            problems.append(f"{row.name}: row's tags {sorted(row.tags)}, {source}'s {sorted(stat.tags)}")
        for tag, values in sorted(stat.values.items()):
            missing = sorted(v for v in values if f"`{v}`" not in row.description)
            if missing:
                problems.append(f"{row.name}: {tag} values not in the description: {missing}")
    assert not problems, "\n".join(problems)


# --- the tests ---------------------------------------------------------------------------------

def test_the_source_reader_finds_the_stats():
    stats = code_stats()
    # A reader that stopped seeing one kind of definition would make the table check vacuous.
    assert {"requests", "sign_duration_us", "cache_entries", "credential_refreshes"} <= set(stats)
    assert stats["requests"].values["outcome"] >= {"hit", "miss", "bypass"}
    assert stats["credential_refreshes"].tags == {"source", "result"}
    assert "success" in stats["credential_refreshes"].values["result"]


def test_the_statistics_table_lists_exactly_the_stats_src_defines():
    check(table_under(FILTER_TABLE), code_stats(), PREFIX, "src/")


def envoy_series() -> dict[str, Stat]:
    """The stats of envoy/envoy.yaml's stats access loggers (``presign_origin.<name>``)."""
    out: dict[str, Stat] = {}

    def walk(node):
        if isinstance(node, dict):
            if str(node.get("@type", "")).endswith("access_loggers.stats.v3.Config"):
                prefix = node["stats_scope"]["prefix"]
                for key, kind in (("counters", "Counter"), ("gauges", "Gauge"), ("histograms", "Histogram")):
                    for s in node.get(key, []):
                        out[s["stat"]["name"]] = Stat(
                            kind, {t["name"] for t in s["stat"].get("tags", [])}, where=[prefix])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    # The file is an envsubst template: its ${PLACEHOLDERS} are not YAML until filled.
    walk(yaml.safe_load(re.sub(r"\$\{\w+\}", "0", ENVOY_YAML.read_text())))
    assert out, "no stats access logger in envoy/envoy.yaml"
    return out


def test_the_envoy_series_table_lists_envoy_yamls_stats_access_logger_stats():
    series = envoy_series()
    prefixes = {s.where[0] for s in series.values()}
    assert prefixes == {"presign_origin"}, prefixes
    # Not in Envoy's wasmcustom namespace: Prometheus shows them with Envoy's `envoy_` prefix.
    check(table_under(ENVOY_TABLE), series, "envoy_presign_origin", "envoy/envoy.yaml")
