//! Checks on the source text of the wasm-only glue (`filter.rs`, `host.rs`,
//! `abi.rs`), which the host unit tests cannot compile (it is built for
//! wasm32 only: the proxy-wasm ABI's imports and exports). They read the files with `include_str!`, so a change
//! that breaks a documented property fails `cargo test --lib`.

/// The wasm-only sources, by name.
const GLUE: [(&str, &str); 3] = [
    ("filter.rs", include_str!("wasm/filter.rs")),
    ("host.rs", include_str!("wasm/host.rs")),
    ("abi.rs", include_str!("wasm/abi.rs")),
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
/// `_trailers`, `on_log`, or an `on_done` of the HTTP context (called when
/// the stream ends). The HTTP context defines only `on_http_request_headers`.
#[test]
fn the_filter_does_no_response_side_work() {
    for (file, src) in GLUE {
        for callback in ["fn on_http_response", "fn on_log", "fn proxy_on_response"] {
            assert!(!src.contains(callback), "{file} defines {callback}…");
        }
    }
    let filter = GLUE[0].1;
    assert_eq!(
        filter.matches("impl HttpContext for ").count(),
        1,
        "one HTTP context"
    );
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
