//! The proxy-wasm contexts: the root context compiles the configuration once per
//! VM; each HTTP context carries out `request::decide` for one request.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::config::Config;
use crate::credentials::CredentialsSource;
use crate::host::{install_panic_hook, HeaderSnapshot, SharedData};
use crate::request::{decide, Decision, FallbackReason, LocalReply, RequestHead};
use crate::url_source::{presigned_path, UrlReport};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    install_panic_hook();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(PresignRoot::default()) });
}}

/// Per-VM state: the compiled configuration, shared with every request.
#[derive(Default)]
struct PresignRoot {
    config: Option<Rc<Config>>,
}

impl Context for PresignRoot {}

impl RootContext for PresignRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok();
        match Config::parse(&raw, &env) {
            Ok(config) => {
                match (&config.signer, config.credentials_source) {
                    (Err(reason), _) => log::warn!(
                        "envoy-presign: no credentials ({reason}); matched requests follow on_error"
                    ),
                    (Ok(s), CredentialsSource::Inline) => log::warn!(
                        "envoy-presign: using inline credentials for access key {}; they are visible in /config_dump",
                        s.access_key_id()
                    ),
                    (Ok(s), CredentialsSource::Env) => log::info!(
                        "envoy-presign: signing with access key {} from the VM environment",
                        s.access_key_id()
                    ),
                }
                log::info!(
                    "envoy-presign: configured {} origin(s)",
                    config.origins.len()
                );
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("envoy-presign: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(PresignRequest { config }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request's context.
struct PresignRequest {
    config: Rc<Config>,
}

impl Context for PresignRequest {}

impl PresignRequest {
    fn reply(&self, reply: LocalReply) {
        let body = reply.body();
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-presign-error", reply.code),
        ];
        if reply == LocalReply::METHOD_NOT_ALLOWED {
            headers.push(("allow", "GET, HEAD"));
        }
        self.send_http_response(reply.status, headers, Some(body.as_bytes()));
    }
}

/// One JSON line per failure: a stable category, the origin, the method and the
/// request id; never a key, signature or URL.
fn log_failure(event: &str, category: &str, origin: &str, method: &str, request_id: &str) {
    let line = serde_json::json!({
        "event": event,
        "category": category,
        "origin": origin,
        "method": method,
        "request_id": request_id,
    });
    log::warn!("{line}");
}

impl HttpContext for PresignRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let head = HeaderSnapshot::from_pairs(self.get_http_request_headers_bytes());
        let Some(path) = head.path.as_deref() else {
            // A non-UTF-8 path cannot be decoded into a key; Envoy's codecs
            // normally refuse such bytes before we see them.
            self.reply(LocalReply::INVALID_PATH_ENCODING);
            return Action::Pause;
        };
        let config = Rc::clone(&self.config);
        let now = self.get_current_time();
        let mut report = UrlReport::default();
        let mut sign =
            |origin: &crate::config::Origin, method, key: &str, query: &[(String, String)]| {
                presigned_path(
                    &config,
                    &SharedData,
                    origin,
                    method,
                    key,
                    query,
                    now,
                    &mut report,
                )
            };
        let req = RequestHead {
            method: &head.method,
            authority: &head.authority,
            path,
        };
        match decide(&config, req, &mut sign) {
            Decision::Bypass => Action::Continue,
            Decision::Reject {
                origin,
                reply,
                failure,
            } => {
                let category = failure.map_or(reply.code, FallbackReason::category);
                log_failure(
                    "presign_rejected",
                    category,
                    &origin.name,
                    &head.method,
                    &head.request_id,
                );
                self.reply(reply);
                Action::Pause
            }
            Decision::Forward {
                origin,
                rewrite,
                fallback,
            } => {
                for name in &head.auth_headers {
                    self.set_http_request_header(name, None);
                }
                if let Some((authority, path)) = rewrite {
                    self.set_http_request_header(":authority", Some(authority));
                    self.set_http_request_header(":path", Some(&path));
                }
                if let Some(reason) = fallback {
                    log_failure(
                        "presign_fallback",
                        reason.category(),
                        &origin.name,
                        &head.method,
                        &head.request_id,
                    );
                }
                Action::Continue
            }
        }
    }
}
