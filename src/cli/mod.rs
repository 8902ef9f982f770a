//! The host command `envoy-presign-config` (`src/bin/envoy-presign-config.rs`):
//! `check` validates a filter configuration with the function `on_configure`
//! runs (`config::startup::configure`), and `sign` shows what the filter would
//! do with one request — the presigned URL, or its local reply — through the
//! filter's own pipeline (`request::pipeline::handle`, against a `DryRun` host),
//! so what it prints is what Envoy would send, not a second implementation of it.
//!
//! Pure: the file reader, the environment and the clock are arguments; the
//! binary passes the real ones. The secret key and session token are never
//! printed, except the token inside a URL, where SigV4 puts it
//! (`X-Amz-Security-Token`): a printed URL is a bearer credential until it
//! expires.

/// `check --envoy`: the Envoy half of a deployment cross-checked against the filter's
/// configuration.
pub mod envoy_check;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::cache::local::LocalCache;
use crate::cache::{Store, StoreError};
use crate::config::overrides;
use crate::config::startup::{configure, Notice};
use crate::config::{Config, Delivery, OnError, Origin, OtherMethods};
use crate::request::decide::{refusal_category, Decision};
use crate::request::headers::HeaderView;
use crate::request::pipeline::{self, DryRun};
use crate::request::redirect::redirect;
use crate::request::url_source::{Host, Keys};
use crate::sigv4::canonical::without_auth_params;
use crate::sigv4::credentials::Credentials;
use crate::sigv4::presign::Signer;

/// Exit status: the configuration is valid / the request is signed.
pub const EXIT_OK: u8 = 0;
/// Exit status: the configuration is refused, or the request would not be
/// forwarded with a presigned URL (local reply, unmatched, unsigned).
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad arguments or an unreadable file.
pub const EXIT_USAGE: u8 = 2;

/// The command line help, printed for `--help` and after a usage error.
pub const USAGE: &str = "\
usage: envoy-presign-config check <config.json>
       envoy-presign-config check --envoy <envoy.yaml>
       envoy-presign-config sign <config.json> <METHOD> <path> [--host <host>] [--at <unix-seconds>]

check  validates a filter configuration (the JSON of the Wasm filter's `configuration`)
       with the code the filter runs in on_configure: prints OK, one line per origin and
       the lines the filter logs at startup; or the error line it logs, naming the field.
check --envoy  reads an Envoy bootstrap (YAML or JSON, with the LDS, CDS and RDS files it
       names) and cross-checks it against the envoy-presign configuration embedded in it:
       each origin's marker route and cluster, no unmarked route to an origin's cluster,
       no whole-response timeout on origin routes, verified TLS (SNI and subject alt name
       of the signed host) to https stores, the origin error scrub, no access log printing
       the path, the failure policy. One line per finding, naming the place in Envoy's
       configuration and what to change; exit 1 if any is an error.
sign   prints the URL the filter would send to the origin for this request (path as the
       client sends it, percent-encoding included), or the local reply it would answer.
       --host is the request's Host (needed for origins with match.host); --at is the
       request's time (default: now). The cache is taken as empty: the URL is the one a
       miss signs (with cache.align, the one every request of the window gets).

With \"credentials\": {\"source\": \"env\"}, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_SESSION_TOKEN are read from this process's environment, as the filter reads the VM's.
With a rotating source (imds, container, assume_role, web_identity, chain), sign uses
those variables as if the filter had just fetched them (URLs not cut to an expiry), and
without them prints the filter's reply before its first fetch.
A printed URL is a bearer credential until it expires (it carries the session token, if
any): do not log or share it.
Every argument must be UTF-8, the configuration's path included: one that is not is a
usage error (exit 2) naming it; for a file whose path is not UTF-8, pass a link to it.
Exit status: 0 valid / signed, 1 refused / not signed, 2 usage error or unreadable file.
";

/// What the command needs from the outside world.
pub struct Io<'a> {
    /// Reads a file (the configuration).
    pub read: &'a dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    /// Reads an environment variable (credentials with `source: env`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The current time, the default of `sign --at`.
    pub now: SystemTime,
}

/// What the command prints and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status (`EXIT_*`).
    pub code: u8,
    /// Text for standard output.
    pub stdout: String,
    /// Text for standard error.
    pub stderr: String,
}

impl Output {
    fn new(code: u8, stdout: String, stderr: String) -> Self {
        Self {
            code,
            stdout,
            stderr,
        }
    }

    fn usage(problem: &str) -> Self {
        Self::new(
            EXIT_USAGE,
            String::new(),
            format!("envoy-presign-config: {problem}\n{USAGE}"),
        )
    }
}

/// Runs the command for `args` (without the program name), as the process
/// gets them (`std::env::args_os`): an argument that is not UTF-8 is a usage
/// error naming the first such one, never a panic (`std::env::args` panics).
pub fn run(args: &[OsString], io: &Io<'_>) -> Output {
    let args = match utf8_args(args) {
        Ok(args) => args,
        Err(problem) => return Output::usage(&problem),
    };
    match args.as_slice() {
        ["check", "--envoy", file] => check_envoy(file, io),
        ["check", file] => check(file, io),
        ["sign", rest @ ..] => match SignArgs::parse(rest, io.now) {
            Ok(a) => sign(&a, io),
            Err(problem) => Output::usage(&problem),
        },
        ["--help" | "-h" | "help"] => Output::new(EXIT_OK, USAGE.to_string(), String::new()),
        [] => Output::usage("no command"),
        [cmd, ..] if matches!(*cmd, "check" | "sign") => {
            Output::usage(&format!("wrong arguments for {cmd}"))
        }
        [cmd, ..] => Output::usage(&format!("unknown command {cmd:?}")),
    }
}

/// The arguments as UTF-8, or the problem with the first one that is not:
/// its position (from 1, after the program name) and a lossy rendering of it
/// (U+FFFD for the bytes that are not UTF-8, control characters escaped).
/// A path is no exception: every output names the configuration by its path,
/// and `Io::read` takes UTF-8.
fn utf8_args(args: &[OsString]) -> Result<Vec<&str>, String> {
    args.iter()
        .enumerate()
        .map(|(i, arg)| {
            arg.to_str().ok_or_else(|| {
                format!(
                    "argument {} is not UTF-8: {:?} (every argument must be UTF-8, \
                     the configuration's path included)",
                    i + 1,
                    arg.to_string_lossy()
                )
            })
        })
        .collect()
}

/// The configuration of `file`, as the filter would have it, or the output
/// that ends the command (unreadable file, refused configuration).
fn load(file: &str, io: &Io<'_>) -> Result<(Config, Vec<Notice>), Output> {
    let raw = (io.read)(file).map_err(|e| Output::usage(&format!("cannot read {file}: {e}")))?;
    configure(&raw, io.env)
        .map(|c| (c.config, c.notices))
        .map_err(|refusal| {
            Output::new(
                EXIT_REFUSED,
                String::new(),
                format!("{}\n", refusal.message),
            )
        })
}

fn check(file: &str, io: &Io<'_>) -> Output {
    let (config, notices) = match load(file, io) {
        Ok(loaded) => loaded,
        Err(out) => return out,
    };
    let mut out = format!("OK {file}\n");
    for origin in &config.origins {
        let _ = writeln!(out, "  {}", origin_summary(origin, config.cache.align));
    }
    out.push_str("the filter logs at startup:\n");
    for n in &notices {
        let _ = writeln!(out, "  [{}] {}", n.level.as_str().to_lowercase(), n.message);
    }
    Output::new(EXIT_OK, out, String::new())
}

fn check_envoy(file: &str, io: &Io<'_>) -> Output {
    use crate::cli::envoy_check::Level;
    let (findings, origins) = match crate::cli::envoy_check::check_envoy(file, io.read, io.env) {
        Ok(found) => found,
        Err(problem) => return Output::usage(&problem),
    };
    let mut out = format!("{file}: envoy-presign origins {}\n", origins.join(", "));
    for f in &findings {
        let level = match f.level {
            Level::Error => "error  ",
            Level::Warning => "warning",
        };
        let _ = writeln!(out, "{level} {}: {}", f.at, f.message);
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    let (code, verdict) = if errors > 0 {
        (EXIT_REFUSED, "FAILED")
    } else {
        (EXIT_OK, "OK")
    };
    let _ = writeln!(out, "{verdict}: {errors} error(s), {warnings} warning(s)");
    Output::new(code, out, String::new())
}

/// One line describing an origin: what it matches, where it sends, how it
/// signs. Never a credential.
pub fn origin_summary(o: &Origin, align: bool) -> String {
    let host = o.match_host.as_ref().map_or_else(
        || "any host".to_string(),
        |h| match &h.port {
            Some(p) => format!("host {}:{p}", h.host),
            None => format!("host {}", h.host),
        },
    );
    // The addressing and base of the URL as signed: for a redirect origin,
    // the public endpoint's (virtual addressing leaves no bucket in the path).
    let addressing = if o.url_path_prefix.is_empty() {
        "virtual"
    } else {
        "path"
    };
    let (delivery, redirect_note) = match o.delivery {
        Delivery::Proxy => (
            format!("-> {}://{}", o.endpoint.scheme, o.authority),
            String::new(),
        ),
        Delivery::Redirect => (
            format!("307 to {}", o.location_base),
            format!(
                "; delivery redirect, cors_origins {:?}, proxied_suffixes {:?}",
                o.cors_origins, o.proxied_suffixes
            ),
        ),
    };
    let window = if align {
        format!("aligned to {} windows", secs(o.policy.window_ms()))
    } else {
        "not aligned".to_string()
    };
    let on_error = match o.on_error {
        OnError::Deny => "deny",
        OnError::Passthrough => "passthrough",
    };
    let other_methods = match o.other_methods {
        OtherMethods::Deny => "deny",
        OtherMethods::Passthrough => "passthrough",
    };
    let types_note = if o.allow_query.iter().any(|n| n == overrides::CONTENT_TYPE) {
        format!(", response_content_types {:?}", o.response_content_types)
    } else {
        String::new()
    };
    format!(
        "origin {}: {}{} ({host}) {delivery}{}/{}<key> ({addressing} addressing), region {}, service {}; \
         expires_in {}, refresh_before {}, min_remaining {}, {window}; on_error {on_error}, \
         other_methods {other_methods}, allow_query {:?}{types_note}{redirect_note}",
        o.name,
        o.match_prefix,
        if o.strip_prefix == o.match_prefix {
            String::new()
        } else {
            format!(" (strip {})", o.strip_prefix)
        },
        o.url_path_prefix,
        o.key_prefix,
        o.region,
        o.service,
        secs(o.policy.expires_in_ms),
        secs(o.policy.refresh_before_ms),
        secs(o.policy.min_remaining_ms),
        o.allow_query,
    )
}

/// Milliseconds as seconds, with the milliseconds only when there are some.
fn secs(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{} s", ms / 1000),
        frac => format!("{}.{frac:03} s", ms / 1000),
    }
}

/// The arguments of `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SignArgs<'a> {
    file: &'a str,
    method: &'a str,
    path: &'a str,
    host: &'a str,
    at: SystemTime,
}

impl<'a> SignArgs<'a> {
    fn parse(args: &[&'a str], now: SystemTime) -> Result<Self, String> {
        let mut positional = Vec::new();
        let (mut host, mut at) = ("", now);
        let mut it = args.iter();
        while let Some(&arg) = it.next() {
            match arg {
                "--host" => host = it.next().ok_or("--host needs a value")?,
                "--at" => {
                    let v = it.next().ok_or("--at needs a value")?;
                    let secs: u64 = v
                        .parse()
                        .map_err(|_| format!("--at: not a whole number of Unix seconds: {v:?}"))?;
                    at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
                }
                _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
                _ => positional.push(arg),
            }
        }
        match positional.as_slice() {
            [file, method, path] => Ok(Self {
                file,
                method,
                path,
                host,
                at,
            }),
            _ => Err("sign takes <config.json> <METHOD> <path>".to_string()),
        }
    }
}

/// A fresh Envoy's shared data: every slot empty, every write accepted and
/// forgotten, so the URL is the one a cache miss signs.
struct EmptyStore;

impl Store for EmptyStore {
    fn get(&self, _key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok((None, None))
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Ok(())
    }
}

fn sign(a: &SignArgs<'_>, io: &Io<'_>) -> Output {
    let (config, _) = match load(a.file, io) {
        Ok(loaded) => loaded,
        Err(out) => return out,
    };
    // Rotating credentials are fetched by the filter at run time: here the
    // process's AWS_* variables stand in for them (as if just fetched), and
    // without them the reply is the filter's before its first fetch.
    let fetched = config
        .rotating
        .as_ref()
        .and_then(|_| Credentials::from_env(io.env).ok())
        .map(|c| Signer::new(&c));
    let keys = config.rotating.as_ref().map(|r| Keys {
        signer: fetched.as_ref(),
        margin_ms: r.refresh.expiry_margin_ms,
        retry_after_secs: 1,
    });
    let host = Host {
        store: &EmptyStore,
        now: a.at,
        clock: None,
        keys,
    };
    let head = HeaderView {
        method: a.method,
        authority: a.host,
        path: Some(a.path.as_bytes()),
        request_id_raw: b"",
        origin: None,
        auth_headers: Vec::new(),
        marker: false,
    };
    let mut local = LocalCache::new(0);
    // The filter's own pipeline against a stand-in for Envoy and an empty
    // local copy: what is printed is what the filter would do.
    let path = a.path.as_bytes();
    let (decision, _) = pipeline::handle(&config, &host, &mut local, &head, path, &mut DryRun);
    let refused = |stdout: String, stderr: String| Output::new(EXIT_REFUSED, stdout, stderr);
    match decision {
        Decision::Forward {
            origin,
            rewrite: Some((authority, path)),
            fallback,
        } => {
            let url = format!("{}://{authority}{path}\n", origin.endpoint.scheme);
            match fallback {
                None => Output::new(
                    EXIT_OK,
                    url,
                    format!(
                        "origin {}: presigned; the URL is a bearer credential until it expires\n",
                        origin.name
                    ),
                ),
                Some(reason) => refused(
                    url,
                    format!(
                        "origin {}: forwarded UNSIGNED (on_error: passthrough), category {}\n",
                        origin.name,
                        reason.category()
                    ),
                ),
            }
        }
        Decision::Redirect {
            origin,
            path,
            fallback,
        } => {
            let location = format!("{}\n", redirect(origin, &path, None, None).location);
            match fallback {
                None => Output::new(
                    EXIT_OK,
                    location,
                    format!(
                        "origin {}: 307 to this presigned URL (delivery: redirect); it is a bearer credential until it expires\n",
                        origin.name
                    ),
                ),
                Some(reason) => refused(
                    location,
                    format!(
                        "origin {}: 307 to this UNSIGNED URL (on_error: passthrough), category {}\n",
                        origin.name,
                        reason.category()
                    ),
                ),
            }
        }
        Decision::Forward {
            origin,
            rewrite: None,
            ..
        } => refused(
            format!(
                "forwarded unsigned to origin {} (other_methods: passthrough): {} {}\n",
                origin.name,
                a.method,
                without_auth_params(a.path).as_deref().unwrap_or(a.path)
            ),
            String::new(),
        ),
        Decision::Reject {
            origin,
            reply,
            failure,
        } => refused(
            format!(
                "{} {} (origin {}, category {})\n",
                reply.status,
                reply.code,
                origin.name,
                refusal_category(reply, failure)
            ),
            String::new(),
        ),
        Decision::Bypass => {
            let hint = if a.host.is_empty() && config.origins.iter().any(|o| o.match_host.is_some())
            {
                " (origins with match.host need --host)"
            } else {
                ""
            };
            refused(
                format!(
                    "no origin matches: the filter leaves the request alone (the shipped routes answer 404 not_found){hint}\n"
                ),
                String::new(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
