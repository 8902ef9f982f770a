//! The `credentials` block of the configuration: static keys (`env`,
//! `inline`) or a rotating source the filter fetches from an Envoy cluster
//! (`imds`, `container`, `assume_role`, `web_identity`, or a `chain` of them).
//! Pure: the VM environment is a lookup, and every refusal names its field.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::sigv4::credentials::{Credentials, CredentialsSource};

/// Default cluster names: the ones `envoy/credentials.yaml` defines.
pub const DEFAULT_IMDS_CLUSTER: &str = "presign_imds";
/// See `DEFAULT_IMDS_CLUSTER`.
pub const DEFAULT_CONTAINER_CLUSTER: &str = "presign_container";
/// See `DEFAULT_IMDS_CLUSTER`: EKS Pod Identity, the internal listener that
/// adds the pod's token (envoy/credentials.yaml).
pub const DEFAULT_POD_IDENTITY_CLUSTER: &str = "presign_pod_identity";
/// See `DEFAULT_IMDS_CLUSTER`.
pub const DEFAULT_STS_CLUSTER: &str = "presign_sts";
/// See `DEFAULT_IMDS_CLUSTER`: the internal listener that adds the token.
pub const DEFAULT_WEB_IDENTITY_CLUSTER: &str = "presign_web_identity";

/// Each call's timeout unless `timeout_ms` says otherwise: the AWS SDKs'
/// metadata read timeout is 5 s with a 2 s connect; one number here.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Longest accepted `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 30_000;
/// IMDSv2 token lifetime the filter asks for (the SDKs' value, the maximum).
pub const DEFAULT_IMDS_TOKEN_TTL_SECS: u32 = 21_600;
/// STS session length unless `duration` says otherwise (STS's own default).
pub const DEFAULT_STS_DURATION_SECS: u32 = 3_600;
/// `RoleSessionName` unless configured (or `AWS_ROLE_SESSION_NAME`).
pub const DEFAULT_SESSION_NAME: &str = "envoy-presign";
/// Refresh this long before the credentials expire (at most half their life).
pub const DEFAULT_REFRESH_BEFORE_SECS: u64 = 900;
/// Every URL expires this long before the credentials that signed it.
pub const DEFAULT_EXPIRY_MARGIN_SECS: u64 = 60;
/// First retry delay after a failed refresh; doubles up to the maximum.
pub const DEFAULT_RETRY_MIN_MS: u64 = 1_000;
/// Longest retry delay after failed refreshes.
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;
/// The chain's order when `chain` is not given: the AWS SDKs' order.
pub const DEFAULT_CHAIN: [&str; 4] = ["env", "web_identity", "container", "imds"];

/// The container endpoint of ECS (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
pub const ECS_CONTAINER_AUTHORITY: &str = "169.254.170.2";
/// The instance metadata service.
pub const IMDS_AUTHORITY: &str = "169.254.169.254";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    source: String,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    chain: Option<Vec<String>>,
    #[serde(default)]
    imds: Option<RawImds>,
    #[serde(default)]
    container: Option<RawContainer>,
    #[serde(default)]
    assume_role: Option<RawSts>,
    #[serde(default)]
    web_identity: Option<RawSts>,
    #[serde(default)]
    refresh: Option<RawRefresh>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImds {
    cluster: Option<String>,
    authority: Option<String>,
    token_ttl: Option<u32>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    cluster: Option<String>,
    relative_uri: Option<String>,
    full_uri: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSts {
    cluster: Option<String>,
    authority: Option<String>,
    region: Option<String>,
    role_arn: Option<String>,
    session_name: Option<String>,
    external_id: Option<String>,
    duration: Option<u32>,
    timeout_ms: Option<u64>,
    /// `assume_role` only: where the credentials that sign the call come from.
    base: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefresh {
    before: Option<u64>,
    expiry_margin: Option<u64>,
    retry_min_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

/// One request the filter sends to a cluster, as the source describes it.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Envoy cluster the call goes to (`dispatch_http_call`'s upstream).
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// Per-call timeout, milliseconds (never 0: Envoy reads 0 as "none").
    pub timeout_ms: u64,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} ({} ms)",
            self.authority, self.cluster, self.timeout_ms
        )
    }
}

/// EC2 instance metadata, IMDSv2 only (no fallback to v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsSource {
    /// Where the calls go.
    pub endpoint: Endpoint,
    /// Lifetime asked for the session token, seconds (1..=21600).
    pub token_ttl_secs: u32,
}

/// The ECS / EKS Pod Identity container credentials endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerSource {
    /// Where the call goes.
    pub endpoint: Endpoint,
    /// `:path` of the call (the URI's path and query).
    pub path: String,
    /// `Authorization` value from `AWS_CONTAINER_AUTHORIZATION_TOKEN`; with a
    /// token file (Pod Identity) Envoy's cluster adds it instead.
    pub authorization: Option<String>,
}

impl fmt::Debug for ContainerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSource")
            .field("endpoint", &self.endpoint)
            .field("path", &self.path)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An STS call: `AssumeRole` (signed) or `AssumeRoleWithWebIdentity`
/// (unsigned; the cluster's internal listener appends the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsSource {
    /// Where the call goes.
    pub endpoint: Endpoint,
    /// Region the STS endpoint signs for.
    pub region: String,
    /// `RoleArn`.
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
    /// `ExternalId` (AssumeRole only).
    pub external_id: Option<String>,
    /// `DurationSeconds` (900..=43200).
    pub duration_secs: u32,
}

/// What signs an `AssumeRole` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseCredentials {
    /// Static keys (`env` or `inline`).
    Static(Credentials),
    /// Temporary credentials fetched first, on each refresh.
    Fetched(Box<Source>),
}

/// One rotating source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// EC2 instance metadata.
    Imds(ImdsSource),
    /// ECS / EKS Pod Identity.
    Container(ContainerSource),
    /// STS `AssumeRole`, signed with the base credentials.
    AssumeRole(StsSource, BaseCredentials),
    /// STS `AssumeRoleWithWebIdentity` (IRSA).
    WebIdentity(StsSource),
}

impl Source {
    /// The `source` label of the refresh metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Source::Imds(_) => "imds",
            Source::Container(_) => "container",
            Source::AssumeRole(..) => "assume_role",
            Source::WebIdentity(_) => "web_identity",
        }
    }
}

/// Every label a refresh can carry, for defining the metrics up front.
pub const SOURCE_LABELS: [&str; 4] = ["imds", "container", "assume_role", "web_identity"];

/// When and how the rotating credentials are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Refresh this long before expiry (capped at half the credentials' life).
    pub before_ms: u64,
    /// URLs expire this long before their credentials; credentials with less
    /// than this (plus the origin's `min_remaining`) left sign nothing.
    pub expiry_margin_ms: u64,
    /// First retry delay after a failure.
    pub retry_min_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long one worker's claim to refresh holds off the others: longer
    /// than the slowest refresh the chain can make, so it only lapses when
    /// the refreshing worker is gone.
    pub lease_ms: u64,
    /// Signing stops this long before the credentials expire
    /// (`stops_signing_ms` with the largest origin `min_remaining`; set by
    /// `Config::parse`, which knows the origins).
    pub stops_signing_ms: u64,
}

/// How long before their expiry credentials stop signing: a URL must end
/// `expiry_margin` before them, keep `min_remaining` of life when served, and
/// have a whole second of life (the one rule `url_source::Keys` applies).
pub fn stops_signing_ms(expiry_margin_ms: u64, min_remaining_ms: u64) -> u64 {
    expiry_margin_ms
        .saturating_add(min_remaining_ms)
        .saturating_add(1000)
}

/// Rotating credentials: the one source every refresh asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotating {
    /// The source: the `source` itself, or a chain's first configured entry.
    /// A failing source is retried with back-off, never replaced by another.
    pub source: Source,
    /// Refresh timing.
    pub refresh: RefreshSettings,
    /// Names this setup in shared-data keys, so another configuration's (or
    /// a previous one's) credentials are never adopted. A hash: no secret.
    pub fingerprint: String,
}

/// What the `credentials` block compiles to.
#[derive(Debug, Clone)]
pub struct CompiledCredentials {
    /// Where they come from (startup log line).
    pub source: CredentialsSource,
    /// Static keys, or why there are none (the reason names variables, never
    /// values); `Err` as well when the credentials rotate.
    pub fixed: Result<Credentials, String>,
    /// The rotating setup, when the source is dynamic.
    pub rotating: Option<Rotating>,
    /// Entries of a `chain` not used, and why (startup log line).
    pub skipped: Vec<String>,
    /// Configured entries of a `chain` (but the ambient `imds`) that an
    /// earlier entry shadows: never used here, so warned about at startup.
    pub dropped: Vec<String>,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn err(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("credentials.{field}"), reason)
}

fn env_var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// Compiles the `credentials` block (absent: `source: env`).
pub(crate) fn compile(
    raw: Option<RawCredentials>,
    env: Env<'_>,
) -> Result<CompiledCredentials, ConfigError> {
    let raw = match raw {
        Some(r) => r,
        None => {
            return Ok(fixed(CredentialsSource::Env, Credentials::from_env(env)));
        }
    };
    if raw.chain.is_some() && raw.source != "chain" {
        return Err(err("chain", "only read with \"source\": \"chain\""));
    }
    unread_blocks(&raw)?;
    match raw.source.as_str() {
        "env" | "inline" => {
            let (source, creds) = static_keys(&raw, raw.source == "inline", env)?;
            Ok(fixed(source, creds))
        }
        "imds" | "container" | "assume_role" | "web_identity" => {
            if !base_is_inline(&raw) {
                no_inline_keys(&raw, &raw.source)?;
            }
            let source = dynamic(&raw, &raw.source, "source", env)?;
            rotating(&raw, source, Vec::new(), Vec::new())
        }
        "chain" => chain(&raw, env),
        other => Err(err(
            "source",
            format!(
                "must be one of env, inline, imds, container, assume_role, web_identity, chain; got {other:?}"
            ),
        )),
    }
}

/// The sources the document reads: the source itself, a chain's entries,
/// and an `assume_role`'s base.
fn sources_read(raw: &RawCredentials) -> Vec<&str> {
    let mut read: Vec<&str> = match (raw.source.as_str(), &raw.chain) {
        ("chain", Some(names)) => names.iter().map(String::as_str).collect(),
        ("chain", None) => DEFAULT_CHAIN.to_vec(),
        (one, _) => vec![one],
    };
    if read.contains(&"assume_role") {
        let base = raw.assume_role.as_ref().and_then(|a| a.base.as_deref());
        read.push(base.unwrap_or("env"));
    }
    read
}

/// A block no source reads is refused (a typo, or a source left out of a
/// chain), rather than silently ignored.
fn unread_blocks(raw: &RawCredentials) -> Result<(), ConfigError> {
    let read = sources_read(raw);
    let blocks = [
        ("imds", raw.imds.is_some()),
        ("container", raw.container.is_some()),
        ("assume_role", raw.assume_role.is_some()),
        ("web_identity", raw.web_identity.is_some()),
    ];
    for (name, present) in blocks {
        if present && !read.contains(&name) {
            return Err(err(
                name,
                format!("not read: source {:?} does not use {name}", raw.source),
            ));
        }
    }
    if raw.refresh.is_some() && matches!(raw.source.as_str(), "env" | "inline") {
        return Err(err(
            "refresh",
            "only read with a rotating source (static keys are never refreshed)",
        ));
    }
    Ok(())
}

/// Inline keys are read for an `assume_role` signed by them (`base: inline`).
fn base_is_inline(raw: &RawCredentials) -> bool {
    sources_read(raw).contains(&"inline") && raw.source != "inline"
}

fn fixed(source: CredentialsSource, creds: Result<Credentials, String>) -> CompiledCredentials {
    CompiledCredentials {
        source,
        fixed: creds,
        rotating: None,
        skipped: Vec::new(),
        dropped: Vec::new(),
    }
}

fn no_inline_keys(raw: &RawCredentials, source: &str) -> Result<(), ConfigError> {
    if raw.access_key_id.is_some() || raw.secret_access_key.is_some() || raw.session_token.is_some()
    {
        return Err(ConfigError::new(
            "credentials",
            format!("inline keys are only read with \"source\": \"inline\" (source is {source:?})"),
        ));
    }
    Ok(())
}

/// `env` or `inline` keys.
fn static_keys(
    raw: &RawCredentials,
    inline: bool,
    env: Env<'_>,
) -> Result<(CredentialsSource, Result<Credentials, String>), ConfigError> {
    if !inline {
        no_inline_keys(raw, "env")?;
        return Ok((CredentialsSource::Env, Credentials::from_env(env)));
    }
    let id = raw.access_key_id.clone().unwrap_or_default();
    let secret = raw.secret_access_key.clone().unwrap_or_default();
    if id.is_empty() {
        return Err(err("access_key_id", "required with source \"inline\""));
    }
    if secret.is_empty() {
        return Err(err("secret_access_key", "required with source \"inline\""));
    }
    let token = raw.session_token.clone().filter(|t| !t.is_empty());
    Ok((
        CredentialsSource::Inline,
        Ok(Credentials::new(id, secret, token)),
    ))
}

/// `source: chain`: the first entry configured here is the source, as the
/// AWS SDKs resolve their chain; an entry is passed over only when it is not
/// configured (neither its block nor its variables). A configured source
/// that fails later is retried with back-off, never replaced by the next
/// entry: falling through on a failure would sign as another identity for
/// as long as that one lasts. Every entry is named in the startup log with
/// why it is or is not used; configured entries an earlier one shadows are
/// warned about (but `imds`, which applies everywhere on EC2).
fn chain(raw: &RawCredentials, env: Env<'_>) -> Result<CompiledCredentials, ConfigError> {
    if !base_is_inline(raw) {
        no_inline_keys(raw, "chain")?;
    }
    let names: Vec<String> = match &raw.chain {
        Some(names) => names.clone(),
        None => DEFAULT_CHAIN.iter().map(|s| (*s).to_string()).collect(),
    };
    if names.is_empty() {
        return Err(err("chain", "must name at least one source"));
    }
    let mut notes = Vec::new();
    let mut dropped = Vec::new();
    // The chosen entry: its name, and its rotating source (`None`: env keys).
    let mut chosen: Option<(&str, Option<Source>)> = None;
    for (i, name) in names.iter().enumerate() {
        let field = format!("chain[{i}]");
        if names.iter().take(i).any(|n| n == name) {
            return Err(err(&field, format!("{name:?} is listed twice")));
        }
        let not_configured = match name.as_str() {
            "env" => Credentials::from_env(env)
                .err()
                .map(|_| "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"),
            "imds" | "container" | "assume_role" | "web_identity" => configured(raw, name, env),
            other => {
                return Err(err(
                    &field,
                    format!(
                    "must be one of env, imds, container, assume_role, web_identity; got {other:?}"
                ),
                ))
            }
        };
        if let Some(why) = not_configured {
            notes.push(format!("{name} ({why})"));
            continue;
        }
        // Compiled even when shadowed: a broken block is refused wherever
        // the configuration runs, not only where that entry would apply.
        let source = match name.as_str() {
            "env" => None,
            n => Some(dynamic(raw, n, &field, env)?),
        };
        match &chosen {
            None => chosen = Some((name.as_str(), source)),
            Some((first, _)) => {
                notes.push(format!("{name} (configured, but {first} comes first)"));
                if name != "imds" {
                    dropped.push(name.clone());
                }
            }
        }
    }
    let mut compiled = match chosen {
        None => {
            return Err(err(
                "chain",
                format!("no source is configured: {}", notes.join(", ")),
            ))
        }
        Some((_, None)) => fixed(CredentialsSource::Env, Credentials::from_env(env)),
        Some((_, Some(source))) => rotating(raw, source, Vec::new(), Vec::new())?,
    };
    compiled.skipped = notes;
    compiled.dropped = dropped;
    Ok(compiled)
}

/// Whether a chain entry applies, as the AWS SDKs decide: `None` when it
/// does, else why not. IMDS always applies; the others need their settings.
fn configured(raw: &RawCredentials, name: &str, env: Env<'_>) -> Option<&'static str> {
    match name {
        "container"
            if raw.container.is_none()
                && env_var(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
                && env_var(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none() =>
        {
            Some("no container block and no AWS_CONTAINER_CREDENTIALS_*_URI")
        }
        "web_identity" if raw.web_identity.is_none() && env_var(env, "AWS_ROLE_ARN").is_none() => {
            Some("no web_identity block and no AWS_ROLE_ARN")
        }
        "assume_role" if raw.assume_role.is_none() => Some("no assume_role block"),
        _ => None,
    }
}

fn rotating(
    raw: &RawCredentials,
    source: Source,
    skipped: Vec<String>,
    dropped: Vec<String>,
) -> Result<CompiledCredentials, ConfigError> {
    let refresh = refresh_settings(raw.refresh.as_ref(), &source)?;
    let fingerprint = fingerprint_of(&source);
    Ok(CompiledCredentials {
        source: CredentialsSource::Rotating,
        fixed: Err("rotating credentials are fetched after startup".into()),
        rotating: Some(Rotating {
            source,
            refresh,
            fingerprint,
        }),
        skipped,
        dropped,
    })
}

/// A hash of the source (its Debug form, which redacts every secret);
/// inline base keys add their own fingerprint, so rotating those is a new setup.
fn fingerprint_of(source: &Source) -> String {
    let mut h = Sha256::new();
    h.update(b"envoy-presign rotating credentials\0");
    h.update(format!("{source:?}").as_bytes());
    if let Source::AssumeRole(_, BaseCredentials::Static(c)) = source {
        h.update(c.access_key_id().as_bytes());
        h.update(b"\0");
        h.update(c.secret_access_key().as_bytes());
    }
    if let Source::Container(c) = source {
        h.update(c.authorization.as_deref().unwrap_or("").as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses refresh timing under which credentials would stop signing before
/// they are refreshed: a worker signs until `expiry_margin` + the origin's
/// `min_remaining` (+ 1 s of URL life) before expiry, and refreshes
/// `refresh.before` before expiry, or half-way through a shorter life (an
/// STS session of `duration`).
pub fn check_timing(r: &mut Rotating, max_min_remaining_ms: u64) -> Result<(), ConfigError> {
    let stops_ms = stops_signing_ms(r.refresh.expiry_margin_ms, max_min_remaining_ms);
    r.refresh.stops_signing_ms = stops_ms;
    let explain = |what: &str, value_ms: u64| {
        format!(
            "{what} ({} s) must exceed refresh.expiry_margin + the largest origin min_remaining + 1 s ({} s): signing stops that long before the credentials expire, so they would lapse before being refreshed",
            value_ms / 1000,
            stops_ms.div_ceil(1000)
        )
    };
    if r.refresh.before_ms <= stops_ms {
        return Err(err(
            "refresh.before",
            explain("refresh.before", r.refresh.before_ms),
        ));
    }
    let session = match &r.source {
        Source::AssumeRole(s, _) => Some(("assume_role", s)),
        Source::WebIdentity(s) => Some(("web_identity", s)),
        _ => None,
    };
    if let Some((block, sts)) = session {
        let half_life_ms = u64::from(sts.duration_secs) * 500;
        if half_life_ms <= stops_ms {
            return Err(err(
                &format!("{block}.duration"),
                explain("half the session", half_life_ms),
            ));
        }
    }
    Ok(())
}

/// The longest a refresh through `source` can take: each call's timeout.
fn worst_case_ms(source: &Source) -> u64 {
    match source {
        Source::Imds(s) => 3 * s.endpoint.timeout_ms,
        Source::Container(s) => s.endpoint.timeout_ms,
        Source::WebIdentity(s) => s.endpoint.timeout_ms,
        Source::AssumeRole(s, base) => {
            s.endpoint.timeout_ms
                + match base {
                    BaseCredentials::Static(_) => 0,
                    BaseCredentials::Fetched(b) => worst_case_ms(b),
                }
        }
    }
}

fn refresh_settings(
    raw: Option<&RawRefresh>,
    source: &Source,
) -> Result<RefreshSettings, ConfigError> {
    let default = RawRefresh::default();
    let raw = raw.unwrap_or(&default);
    let before = raw.before.unwrap_or(DEFAULT_REFRESH_BEFORE_SECS);
    if !(1..=43_200).contains(&before) {
        return Err(err(
            "refresh.before",
            format!("must be between 1 and 43200 seconds, got {before}"),
        ));
    }
    let margin = raw.expiry_margin.unwrap_or(DEFAULT_EXPIRY_MARGIN_SECS);
    if margin > 3_600 {
        return Err(err(
            "refresh.expiry_margin",
            format!("must be between 0 and 3600 seconds, got {margin}"),
        ));
    }
    let retry_min = raw.retry_min_ms.unwrap_or(DEFAULT_RETRY_MIN_MS);
    if !(100..=600_000).contains(&retry_min) {
        return Err(err(
            "refresh.retry_min_ms",
            format!("must be between 100 and 600000, got {retry_min}"),
        ));
    }
    let retry_max = raw
        .retry_max_ms
        .unwrap_or(DEFAULT_RETRY_MAX_MS.max(retry_min));
    if retry_max < retry_min || retry_max > 3_600_000 {
        return Err(err(
            "refresh.retry_max_ms",
            format!("must be between retry_min_ms ({retry_min}) and 3600000, got {retry_max}"),
        ));
    }
    let slowest = worst_case_ms(source);
    Ok(RefreshSettings {
        before_ms: before * 1000,
        expiry_margin_ms: margin * 1000,
        retry_min_ms: retry_min,
        retry_max_ms: retry_max,
        lease_ms: slowest + 2_000,
        stops_signing_ms: stops_signing_ms(margin * 1000, 0),
    })
}

fn dynamic(
    raw: &RawCredentials,
    name: &str,
    field: &str,
    env: Env<'_>,
) -> Result<Source, ConfigError> {
    match name {
        "imds" => imds(raw.imds.as_ref()).map(Source::Imds),
        "container" => container(raw.container.as_ref(), env).map(Source::Container),
        "web_identity" => {
            let d = RawSts::default();
            let s = raw.web_identity.as_ref().unwrap_or(&d);
            if s.base.is_some() || s.external_id.is_some() {
                let f = if s.base.is_some() {
                    "base"
                } else {
                    "external_id"
                };
                return Err(err(
                    &format!("web_identity.{f}"),
                    "only read under assume_role",
                ));
            }
            sts(s, "web_identity", DEFAULT_WEB_IDENTITY_CLUSTER, env).map(Source::WebIdentity)
        }
        "assume_role" => {
            let Some(s) = raw.assume_role.as_ref() else {
                return Err(err(field, "source assume_role needs an assume_role block"));
            };
            let call = sts(s, "assume_role", DEFAULT_STS_CLUSTER, env)?;
            let base = base(raw, s.base.as_deref(), env)?;
            Ok(Source::AssumeRole(call, base))
        }
        _ => Err(err(field, format!("unknown source {name:?}"))),
    }
}

/// `assume_role.base`: env (default), inline, imds, container or web_identity.
fn base(
    raw: &RawCredentials,
    name: Option<&str>,
    env: Env<'_>,
) -> Result<BaseCredentials, ConfigError> {
    let field = "assume_role.base";
    match name.unwrap_or("env") {
        "env" => Credentials::from_env(env)
            .map(BaseCredentials::Static)
            .map_err(|e| err(field, format!("base env: {e}"))),
        "inline" => {
            let (_, creds) = static_keys(raw, true, env)?;
            creds
                .map(BaseCredentials::Static)
                .map_err(|e| err(field, e))
        }
        n @ ("imds" | "container" | "web_identity") => Ok(BaseCredentials::Fetched(Box::new(
            dynamic(raw, n, field, env)?,
        ))),
        other => Err(err(
            field,
            format!("must be env, inline, imds, container or web_identity; got {other:?}"),
        )),
    }
}

fn name_field(value: Option<&String>, field: &str, default: &str) -> Result<String, ConfigError> {
    let v = value.map_or(default, String::as_str);
    if v.is_empty() || v.len() > 255 || v.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(err(
            field,
            "must be 1 to 255 characters without spaces or control characters",
        ));
    }
    Ok(v.to_string())
}

fn timeout(value: Option<u64>, field: &str) -> Result<u64, ConfigError> {
    let t = value.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&t) {
        return Err(err(
            field,
            format!("must be between 1 and {MAX_TIMEOUT_MS} ms, got {t}"),
        ));
    }
    Ok(t)
}

fn imds(raw: Option<&RawImds>) -> Result<ImdsSource, ConfigError> {
    let d = RawImds::default();
    let raw = raw.unwrap_or(&d);
    let ttl = raw.token_ttl.unwrap_or(DEFAULT_IMDS_TOKEN_TTL_SECS);
    if !(1..=21_600).contains(&ttl) {
        return Err(err(
            "imds.token_ttl",
            format!("must be between 1 and 21600 seconds, got {ttl}"),
        ));
    }
    Ok(ImdsSource {
        endpoint: Endpoint {
            cluster: name_field(raw.cluster.as_ref(), "imds.cluster", DEFAULT_IMDS_CLUSTER)?,
            authority: name_field(raw.authority.as_ref(), "imds.authority", IMDS_AUTHORITY)?,
            timeout_ms: timeout(raw.timeout_ms, "imds.timeout_ms")?,
        },
        token_ttl_secs: ttl,
    })
}

fn container(raw: Option<&RawContainer>, env: Env<'_>) -> Result<ContainerSource, ConfigError> {
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

/// A field under `credentials`, or an environment variable named as itself.
fn err_named(field: &str, reason: impl Into<String>) -> ConfigError {
    if field.starts_with("AWS_") {
        ConfigError::new(format!("credentials (VM environment {field})"), reason)
    } else {
        err(field, reason)
    }
}

fn valid_path(p: &str) -> bool {
    p.len() <= 2048 && p.bytes().all(|b| b.is_ascii_graphic())
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

fn sts(
    raw: &RawSts,
    block: &str,
    default_cluster: &str,
    env: Env<'_>,
) -> Result<StsSource, ConfigError> {
    let f = |name: &str| format!("{block}.{name}");
    let region = raw
        .region
        .clone()
        .or_else(|| env_var(env, "AWS_REGION"))
        .or_else(|| env_var(env, "AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            err(
                &f("region"),
                "required (or AWS_REGION in the VM environment)",
            )
        })?;
    if region.is_empty()
        || region.len() > 32
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err(&f("region"), "must be a region name like eu-west-1"));
    }
    let default_authority = if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    };
    let role_arn = match raw.role_arn.clone() {
        Some(v) => v,
        None if block == "web_identity" => env_var(env, "AWS_ROLE_ARN").ok_or_else(|| {
            err(
                &f("role_arn"),
                "required (or AWS_ROLE_ARN in the VM environment)",
            )
        })?,
        None => return Err(err(&f("role_arn"), "required")),
    };
    if !role_arn.starts_with("arn:") || role_arn.len() > 2048 || !valid_path(&role_arn) {
        return Err(err(&f("role_arn"), "must be a role ARN (arn:...)"));
    }
    let session_name = raw
        .session_name
        .clone()
        .or_else(|| env_var(env, "AWS_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
    if !(2..=64).contains(&session_name.len())
        || !session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=,.@_-".contains(&b))
    {
        return Err(err(
            &f("session_name"),
            "must be 2 to 64 characters of letters, digits and =,.@_-",
        ));
    }
    if let Some(x) = &raw.external_id {
        if !(2..=1224).contains(&x.len()) || !valid_path(x) {
            return Err(err(
                &f("external_id"),
                "must be 2 to 1224 visible ASCII characters",
            ));
        }
    }
    let duration = raw.duration.unwrap_or(DEFAULT_STS_DURATION_SECS);
    if !(900..=43_200).contains(&duration) {
        return Err(err(
            &f("duration"),
            format!("must be between 900 and 43200 seconds, got {duration}"),
        ));
    }
    Ok(StsSource {
        endpoint: Endpoint {
            cluster: name_field(raw.cluster.as_ref(), &f("cluster"), default_cluster)?,
            authority: name_field(raw.authority.as_ref(), &f("authority"), &default_authority)?,
            timeout_ms: timeout(raw.timeout_ms, &f("timeout_ms"))?,
        },
        region,
        role_arn,
        session_name,
        external_id: raw.external_id.clone(),
        duration_secs: duration,
    })
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
