//! Where an origin's URLs point and which requests it takes by host: the S3
//! endpoint (`scheme://host[:port]`), split once so the request path only
//! concatenates strings, and `match.host`, compiled for a cheap comparison.

use crate::config::choices::Addressing;

/// `match.host`, compiled: a host name compared case-insensitively and
/// without a trailing dot, and a port compared only when one was configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMatch {
    /// Lower-case host, no trailing dot (IPv6 literals keep their brackets).
    pub host: String,
    /// The port the request must name, when the configuration gave one.
    pub port: Option<String>,
}

impl HostMatch {
    /// Whether a request's `:authority` names this host (and port, if set).
    pub fn matches(&self, authority: &str) -> bool {
        let (host, port) = split_authority(authority);
        let host = host.strip_suffix('.').unwrap_or(host);
        host.eq_ignore_ascii_case(&self.host)
            && self.port.as_deref().is_none_or(|p| port == Some(p))
    }
}

/// The S3 endpoint, split once so the request path only concatenates strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Host name or IP literal (IPv6 keeps its brackets), lower-cased.
    pub host: String,
    /// Port when it is not the scheme's default.
    pub port: Option<u16>,
}

impl Endpoint {
    /// `host[:port]`, the value of `Host` for a request to `host`.
    pub(super) fn authority_for(&self, host: &str) -> String {
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
}

/// `(host, port)` of `host[:port]` (IPv6 literals keep their brackets); the
/// port only when it is all digits.
pub(super) fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => {
                let (h, rest) = authority.split_at(end + 1);
                (h, rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    }
}

/// Refuses an addressing the endpoint cannot serve (shared by `addressing`
/// and `public_addressing`).
pub(super) fn check_addressing(
    endpoint: &Endpoint,
    bucket: &str,
    addressing: Addressing,
) -> Result<(), &'static str> {
    if addressing == Addressing::Virtual && is_ip_literal(&endpoint.host) {
        return Err("virtual addressing needs a DNS name (bucket.host); the endpoint is an IP address, use \"path\" (as the AWS SDKs do)");
    }
    if addressing == Addressing::Virtual && bucket.contains('.') && endpoint.scheme == "https" {
        return Err("virtual addressing with a dotted bucket name breaks TLS wildcard certificates; use \"path\"");
    }
    Ok(())
}

/// `Host` and path prefix of URLs signed for `endpoint` with `addressing`.
pub(super) fn signed_host(
    endpoint: &Endpoint,
    addressing: Addressing,
    bucket: &str,
) -> (String, String) {
    match addressing {
        Addressing::Path => (endpoint.authority_for(&endpoint.host), format!("/{bucket}")),
        Addressing::Virtual => (
            endpoint.authority_for(&format!("{bucket}.{}", endpoint.host)),
            String::new(),
        ),
    }
}

/// Compiles `match.host`: `host` or `host:port`, lower-cased, without a
/// trailing dot.
pub(super) fn compile_host_match(h: &str) -> Result<HostMatch, String> {
    let (host, port) = split_authority(h);
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("must be a host name, optionally with :port".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':'))
    {
        return Err(format!("{h:?} is not a host name (or host:port)"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().ok().filter(|n| *n != 0).is_none() {
            return Err(format!("has an invalid port {p:?}"));
        }
    }
    Ok(HostMatch {
        host: host.to_ascii_lowercase(),
        port: port.map(str::to_string),
    })
}

/// An IPv4 or bracketed IPv6 literal: no `bucket.` can be put before it.
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Parses `scheme://host[:port]` with nothing after the authority but an optional `/`.
pub(super) fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = s.strip_prefix("http://") {
        ("http", r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host[:port] with no path, query or user info".into());
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("has an unterminated IPv6 literal")?;
        let (h, after) = authority.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err("has junk after the IPv6 literal".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    {
        return Err("has an invalid host".into());
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| format!("has an invalid port {p:?}"))?;
            let default = if scheme == "https" { 443 } else { 80 };
            (n != default).then_some(n)
        }
    };
    Ok(Endpoint {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}
