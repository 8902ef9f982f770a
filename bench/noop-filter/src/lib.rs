//! Benchmark floors. Without configuration: sets `x-noop: 1` on every request and
//! does nothing else (the price of the Wasm ABI itself). With a configuration of
//! three lines, `authority`, `path` and `marker`: makes the hostcalls of
//! envoy-presign's cache-hit path with no logic in between (a clock read, a read
//! of the request header map, `:authority`, `:path` and the origin marker set),
//! so the benchmark shows what those hostcalls cost apart from the filter.
//! An authority of `-` leaves `:authority` alone (one header write fewer).
//! An optional fourth line of flags: `noclock` skips the clock read (the filter's
//! proxied hits judge freshness by the tick clock), `batch` makes the header
//! writes one `proxy_set_header_map_pairs` of the rewritten map. Built with the
//! proxy-wasm SDK, it also exports the response-side callbacks, which Envoy
//! calls on every request; envoy-presign exports none of them.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot::default()) });
}}

/// The hit path's rewrite, when configured.
struct Rewrite {
    authority: String,
    path: String,
    marker: String,
    /// Read the clock, as the filter does per request.
    clock: bool,
    /// Write the rewritten header map in one hostcall instead of one per header.
    batch: bool,
}

#[derive(Default)]
struct NoopRoot {
    rewrite: Option<Rc<Rewrite>>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        let mut lines = text.lines();
        self.rewrite = match (lines.next(), lines.next(), lines.next()) {
            (Some(a), Some(p), Some(m)) => {
                let flags = lines.next().unwrap_or("");
                Some(Rc::new(Rewrite {
                    authority: a.to_string(),
                    path: p.to_string(),
                    marker: m.to_string(),
                    clock: !flags.contains("noclock"),
                    batch: flags.contains("batch"),
                }))
            }
            _ => None,
        };
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop {
            rewrite: self.rewrite.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    rewrite: Option<Rc<Rewrite>>,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match &self.rewrite {
            None => self.set_http_request_header("x-noop", Some("1")),
            Some(r) if r.batch => {
                if r.clock {
                    let _ = self.get_current_time();
                }
                let mut headers = self.get_http_request_headers();
                for (name, value) in headers.iter_mut() {
                    if name == ":path" {
                        value.clone_from(&r.path);
                    } else if name == ":authority" && r.authority != "-" {
                        value.clone_from(&r.authority);
                    }
                }
                headers.push(("x-envoy-presign-origin".to_string(), r.marker.clone()));
                self.set_http_request_headers(
                    headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect(),
                );
            }
            Some(r) => {
                if r.clock {
                    let _ = self.get_current_time();
                }
                let _ = self.get_http_request_headers_bytes();
                if r.authority != "-" {
                    self.set_http_request_header(":authority", Some(&r.authority));
                }
                self.set_http_request_header(":path", Some(&r.path));
                self.set_http_request_header("x-envoy-presign-origin", Some(&r.marker));
            }
        }
        Action::Continue
    }
}
