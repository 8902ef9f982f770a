//! The `container` source (ECS, EKS Pod Identity): its URI, from the block
//! or the VM environment as the AWS SDKs read it, which addresses plain
//! http may reach, and which shipped cluster reaches the endpoint.

use crate::config::credentials::fields::{
    env_var, err, err_named, name_field, timeout, valid_path, Env,
};
use crate::config::credentials::raw::RawContainer;
use crate::config::credentials::sources::{
    ContainerSource, Endpoint, DEFAULT_CONTAINER_CLUSTER, DEFAULT_POD_IDENTITY_CLUSTER,
    ECS_CONTAINER_AUTHORITY,
};
use crate::config::error::ConfigError;

/// Compiles the `container` block (absent: the VM environment alone).
pub(super) fn container(
    raw: Option<&RawContainer>,
    env: Env<'_>,
) -> Result<ContainerSource, ConfigError> {
    let d = RawContainer::default();
    let raw = raw.unwrap_or(&d);
    let timeout_ms = timeout(raw.timeout_ms, "container.timeout_ms")?;
    if raw.relative_uri.is_some() && raw.full_uri.is_some() {
        return Err(err(
            "container.full_uri",
            "give relative_uri or full_uri, not both",
        ));
    }
    // The SDKs' precedence: the relative URI, then the full one.
    let relative = raw
        .relative_uri
        .clone()
        .map(|v| (v, "container.relative_uri"))
        .or_else(|| {
            (raw.full_uri.is_none())
                .then(|| env_var(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
                .flatten()
                .map(|v| (v, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
        });
    let (authority, path, https) = if let Some((rel, field)) = relative {
        if !rel.starts_with('/') || !valid_path(&rel) {
            return Err(err_named(field, "must be a path starting with '/'"));
        }
        (ECS_CONTAINER_AUTHORITY.to_string(), rel, false)
    } else {
        let (full, field) = match &raw.full_uri {
            Some(v) => (v.clone(), "container.full_uri"),
            None => match env_var(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI") {
                Some(v) => (v, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
                None => {
                    return Err(err(
                        "container",
                        "needs relative_uri or full_uri (or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI in the VM environment)",
                    ))
                }
            },
        };
        let (authority, path) = full_uri(&full).map_err(|reason| err_named(field, reason))?;
        (authority, path, full.starts_with("https://"))
    };
    let cluster = match &raw.cluster {
        Some(c) => name_field(Some(c), "container.cluster", "")?,
        None => container_cluster(&authority, https)
            .ok_or_else(|| {
                err(
                    "container.cluster",
                    format!(
                        "the container endpoint {}://{authority} is neither ECS's (169.254.170.2) nor EKS Pod Identity's (169.254.170.23, fd00:ec2::23) over http, so no shipped cluster reaches it: name a cluster whose endpoint is {authority}{}",
                        if https { "https" } else { "http" },
                        if https { " and that originates TLS verifying its certificate (the call carries the authorization token)" } else { "" }
                    ),
                )
            })?
            .to_string(),
    };
    Ok(ContainerSource {
        endpoint: Endpoint {
            cluster,
            authority,
            timeout_ms,
        },
        path,
        authorization: env_var(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    })
}

/// The shipped cluster that reaches a container endpoint, by its address:
/// ECS's agent, or EKS Pod Identity's agent through the listener that adds
/// the pod's token. Only over plain http, where these agents listen, and on
/// their port 80; any other endpoint needs a cluster named for it.
fn container_cluster(authority: &str, https: bool) -> Option<&'static str> {
    let host = authority.strip_suffix(":80").unwrap_or(authority);
    match host {
        _ if https => None,
        ECS_CONTAINER_AUTHORITY => Some(DEFAULT_CONTAINER_CLUSTER),
        "169.254.170.23" | "[fd00:ec2::23]" => Some(DEFAULT_POD_IDENTITY_CLUSTER),
        _ => None,
    }
}

/// `(authority, path)` of a container full URI, allowed as the AWS SDKs
/// allow it: `https`, or `http` to a loopback address or to ECS / EKS's
/// own link-local addresses. A host name is only allowed over `https`
/// (resolving it to check the addresses is not possible in the VM), or
/// as `localhost`.
pub fn full_uri(uri: &str) -> Result<(String, String), String> {
    let (https, rest) = if let Some(r) = uri.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = uri.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() || !valid_path(path) || authority.contains('@') {
        return Err("must be scheme://host[:port]/path".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((h, _)) => h,
            None => return Err("unterminated IPv6 address".into()),
        },
        None => authority.split(':').next().unwrap_or(authority),
    };
    if !https && !allowed_http_host(host) {
        return Err(format!(
            "http is only allowed to a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23 (got host {host:?}); use https"
        ));
    }
    Ok((authority.to_ascii_lowercase(), path.to_string()))
}

fn allowed_http_host(host: &str) -> bool {
    use std::net::IpAddr;
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip.octets() == [169, 254, 170, 2]
                || ip.octets() == [169, 254, 170, 23]
        }
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.segments() == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x23]
        }
        Err(_) => false,
    }
}
