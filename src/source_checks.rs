//! Checks that need source text: on the wasm-only glue (src/wasm/), which the
//! host unit tests cannot compile (it is built for wasm32 only: the proxy-wasm
//! ABI's imports and exports), read with `include_str!`; and on the layout of
//! src/ (the rooms' order, no circle within a room, the shared pipeline), read
//! from disk. A change that breaks a documented property fails `cargo test --lib`.

/// The wasm-only sources, by name.
const GLUE: [(&str, &str); 12] = [
    ("filter.rs", include_str!("wasm/filter.rs")),
    ("host.rs", include_str!("wasm/host.rs")),
    ("abi.rs", include_str!("wasm/abi.rs")),
    ("mod.rs", include_str!("wasm/mod.rs")),
    ("shared.rs", include_str!("wasm/shared.rs")),
    ("rotating.rs", include_str!("wasm/rotating.rs")),
    ("failure_log.rs", include_str!("wasm/failure_log.rs")),
    ("host/http_call.rs", include_str!("wasm/host/http_call.rs")),
    ("host/logger.rs", include_str!("wasm/host/logger.rs")),
    ("host/metrics.rs", include_str!("wasm/host/metrics.rs")),
    ("host/request.rs", include_str!("wasm/host/request.rs")),
    (
        "host/shared_data.rs",
        include_str!("wasm/host/shared_data.rs"),
    ),
];

/// The body of the first `impl <header> {` block of `src`, up to its
/// matching brace (`None` when there is no such block).
fn impl_block<'a>(src: &'a str, header: &str) -> Option<&'a str> {
    let start = src.find(header)? + header.len();
    let mut depth = 1usize;
    for (i, c) in src[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&src[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// docs/observability.md, Metrics, "What the filter does not measure": "It does nothing
/// when the response comes back (no status read, no clock read, no
/// histogram)". Envoy runs response-side code only where the module exports
/// a callback for it, so this fails as soon as the glue defines one: a
/// `proxy_on_response_*` export, `on_http_response_headers`, `_body`,
/// `_trailers`, `on_log` (nor the `proxy_on_log` export, which Envoy would call
/// into the VM for on every request), or an `on_done` of the HTTP context
/// (called when the stream ends). The HTTP context defines only
/// `on_http_request_headers`.
#[test]
fn the_filter_does_no_response_side_work() {
    for (file, src) in GLUE {
        for callback in [
            "fn on_http_response",
            "fn on_log",
            "fn proxy_on_log",
            "fn proxy_on_response",
        ] {
            assert!(!src.contains(callback), "{file} defines {callback}…");
        }
    }
    let filter = GLUE[0].1;
    let contexts: usize = GLUE
        .iter()
        .map(|(_, src)| src.matches("impl HttpContext for ").count())
        .sum();
    assert_eq!(contexts, 1, "one HTTP context");
    assert_eq!(filter.matches("impl HttpContext for ").count(), 1);
    let http = impl_block(filter, "impl HttpContext for PresignRequest {")
        .unwrap_or_else(|| panic!("filter.rs: no `impl HttpContext for PresignRequest`"));
    let callbacks: Vec<&str> = http
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("fn "))
        .map(|l| l.split('(').next().unwrap_or(l))
        .collect();
    assert_eq!(callbacks, ["on_http_request_headers"]);
    assert!(
        filter.contains("impl Context for PresignRequest {}"),
        "the HTTP context's Context impl must stay empty (no on_done at the stream's end)"
    );
}

/// The checker itself: it sees a response callback where there is one.
#[test]
fn impl_block_finds_the_callbacks_of_a_block() {
    let src = "impl HttpContext for X {\n    fn on_http_request_headers(&mut self) { if a { b } }\n    fn on_http_response_headers(&mut self) {}\n}\nfn after() {}";
    let block = impl_block(src, "impl HttpContext for X {").unwrap();
    assert!(block.contains("fn on_http_response_headers"));
    assert!(!block.contains("fn after"));
    assert_eq!(impl_block(src, "impl Nothing {"), None);
}

/// docs/configuration.md, "Checking a configuration": `envoy-presign-config check` runs
/// the code `on_configure` runs. Both go through `startup::configure`; this
/// fails if the glue parses the configuration some other way.
#[test]
fn on_configure_uses_the_shared_startup_function() {
    let filter = GLUE[0].1;
    let body = impl_block(filter, "fn on_configure(&mut self, _size: usize) -> bool {")
        .unwrap_or_else(|| panic!("filter.rs: no on_configure"));
    assert!(body.contains("configure(&raw, &env)"), "{body}");
    assert!(
        !filter.contains("Config::parse"),
        "filter.rs parses on its own"
    );
    // The host command: the same function, the process environment read as
    // the filter reads the VM's.
    assert!(include_str!("cli/mod.rs").contains("configure(&raw, io.env)"));
    assert!(include_str!("bin/envoy-presign-config.rs").contains("std::env::var(k).ok()"));
}

/// docs/operations.md, "When Envoy refuses a hostcall": the filter speaks the
/// proxy-wasm ABI itself. The SDK's dispatcher and logger panicked on an
/// unknown context id or call token and unwrapped hostcall statuses (a
/// review's finding), so the crate must not depend on it again, and the glue
/// has no `unwrap`, `expect` or `panic!` outside the `test-panic` feature's
/// deliberate one.
#[test]
fn the_glue_has_no_sdk_and_no_panic_path() {
    let manifest = include_str!("../Cargo.toml");
    assert!(
        !manifest
            .lines()
            .any(|l| l.trim_start().starts_with("proxy-wasm")),
        "Cargo.toml depends on the proxy-wasm SDK again"
    );
    for (file, src) in GLUE {
        let code: Vec<&str> = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for needle in [".unwrap()", ".expect(", "unreachable!(", "todo!("] {
            assert!(
                !code.iter().any(|l| l.contains(needle)),
                "{file} has {needle}"
            );
        }
        let panics: Vec<&&str> = code.iter().filter(|l| l.contains("panic!(")).collect();
        let allowed = if file == "filter.rs" { 1 } else { 0 };
        assert_eq!(panics.len(), allowed, "{file}: {panics:?}");
    }
    let filter = GLUE[0].1;
    let at = filter.find("panic!(").unwrap_or(0);
    assert!(
        filter[..at]
            .rfind("#[cfg(feature = \"test-panic\")]")
            .is_some_and(|c| at - c < 400),
        "filter.rs's one panic! must be the test-panic feature's"
    );
}

/// The rooms of src/, lowest first: a room's production code may use only the
/// rooms before it (docs/development.md, "Layout"), so the graph of modules has
/// no circle and a reader can start at the bottom.
const ROOMS: [&str; 10] = [
    "clock",
    "log_limit",
    "sigv4",
    "cache",
    "config",
    "rotation",
    "request",
    "metrics",
    "cli",
    "wasm",
];

/// Production source files under src/ (test files and `#[cfg(test)]` tails
/// left out), as (path relative to src/, text).
fn production_sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel.to_string_lossy().to_string();
            let file = rel.file_name().map(|f| f.to_string_lossy().to_string());
            let file = file.unwrap_or_default();
            if !name.ends_with(".rs")
                || file.ends_with("_tests.rs")
                || file == "tests.rs"
                || ["testing.rs", "source_checks.rs"].contains(&name.as_str())
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let code = text
                .split("\n#[cfg(test)]")
                .next()
                .unwrap_or("")
                .to_string();
            out.push((name, code));
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The room of a file (its first path component, without `.rs`).
fn room_of(path: &str) -> &str {
    let first = path.split('/').next().unwrap_or(path);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The crate paths a source uses (`crate::a::b` → `["a", "b"]`), comments left out.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = line.get(i + "crate::".len()..).unwrap_or("");
            let path: Vec<String> = rest
                .split("::")
                .map_while(|seg| {
                    let seg: String = seg
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                        .collect();
                    (!seg.is_empty()).then_some(seg)
                })
                .collect();
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn rooms_use_only_the_rooms_below_them() {
    let sources = production_sources();
    assert!(sources.len() > 20, "found only {} files", sources.len());
    let mut wrong = Vec::new();
    for (file, code) in &sources {
        let room = room_of(file);
        if room == "lib" || room == "bin" {
            continue;
        }
        let rank = ROOMS.iter().position(|r| *r == room);
        let rank = rank.unwrap_or_else(|| panic!("{file}: room {room} is not in ROOMS"));
        for path in crate_paths(code) {
            let used = path[0].as_str();
            let used_rank = ROOMS.iter().position(|r| *r == used);
            if used != room && used_rank.is_none_or(|u| u > rank) {
                wrong.push(format!("{file} uses crate::{}", path.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or unknown uses:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn files_within_a_room_have_no_circle() {
    let sources = production_sources();
    // file module path (e.g. "request::decide") -> module paths it uses in its room.
    let module = |file: &str| {
        let m = file.strip_suffix(".rs").unwrap_or(file).replace('/', "::");
        m.strip_suffix("::mod").map(str::to_string).unwrap_or(m)
    };
    let modules: Vec<String> = sources.iter().map(|(f, _)| module(f)).collect();
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for (i, (file, code)) in sources.iter().enumerate() {
        for path in crate_paths(code) {
            // The longest known module the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find_map(|p| modules.iter().position(|m| *m == p));
            if let Some(j) = target {
                let parent_of_i = modules[i].starts_with(&format!("{}::", modules[j]));
                if j != i && !parent_of_i && room_of(file) == room_of(&sources[j].0) {
                    edges.push((i, j));
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: usize,
        edges: &[(usize, usize)],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        stack.push(n);
        for &(_, m) in edges.iter().filter(|(a, _)| *a == n) {
            if state[m] == 1 {
                let at = stack.iter().position(|x| *x == m).unwrap_or(0);
                return Some(stack[at..].to_vec());
            }
            if state[m] == 0 {
                if let Some(c) = visit(m, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state[n] = 2;
        None
    }
    let mut state = vec![0u8; sources.len()];
    for n in 0..sources.len() {
        if state[n] == 0 {
            if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                let names: Vec<&str> = cycle.iter().map(|i| modules[*i].as_str()).collect();
                panic!("a circle: {}", names.join(" -> "));
            }
        }
    }
}

/// The filter and the host command share one request pipeline
/// (`request::pipeline`): neither chains the decision, the URL source and the
/// redirect itself.
#[test]
fn the_filter_and_the_host_command_share_the_pipeline() {
    let filter = GLUE[0].1;
    let cli = include_str!("cli/mod.rs");
    for (file, src) in [("wasm/filter.rs", filter), ("cli/mod.rs", cli)] {
        assert!(
            src.contains("pipeline::handle("),
            "{file} does not call the pipeline"
        );
        for own in ["decide(", "presigned_path(", "actions::forward("] {
            assert!(!src.contains(own), "{file} calls {own} itself");
        }
    }
    assert!(filter.contains("pipeline::local_hit("));
}

/// Every file of src/wasm/ is in `GLUE`, so the glue's checks cover a file
/// added there.
#[test]
fn the_glue_checks_cover_every_wasm_file() {
    let mut on_disk: Vec<String> = production_sources()
        .into_iter()
        .filter_map(|(path, _)| path.strip_prefix("wasm/").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = GLUE.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    assert_eq!(listed, on_disk);
}
