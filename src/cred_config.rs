//! The `credentials` block of the configuration: static keys (`env`,
//! `inline`) or a rotating source the filter fetches from an Envoy cluster
//! (`imds`, `container`, `assume_role`, `web_identity`, or a `chain` of them).
//! Pure: the VM environment is a lookup, and every refusal names its field.

use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::credentials::{Credentials, CredentialsSource};

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
mod tests {
    use super::*;
    use crate::testing::env_of;
    use serde_json::{json, Value};

    const SECRET: &str = "wJalrXUtnFEMI-secret-3f9a";
    const TOKEN: &str = "FwoGZXIvYXdz-token-81c2";
    const AUTH: &str = "Bearer pod-identity-77d1";

    fn compile_with(doc: Value, env: &[(&str, &str)]) -> Result<CompiledCredentials, ConfigError> {
        let raw: RawCredentials = serde_json::from_value(doc).unwrap();
        compile(Some(raw), &env_of(env))
    }

    /// The refusal of `doc`: its field and reason.
    fn refusal(doc: Value, env: &[(&str, &str)]) -> ConfigError {
        match compile_with(doc.clone(), env) {
            Ok(c) => panic!("{doc} was accepted: {c:?}"),
            Err(e) => e,
        }
    }

    fn field_of(doc: Value, env: &[(&str, &str)]) -> String {
        refusal(doc, env).field
    }

    fn setup(doc: Value, env: &[(&str, &str)]) -> Rotating {
        match compile_with(doc.clone(), env) {
            Ok(CompiledCredentials {
                rotating: Some(r), ..
            }) => r,
            Ok(c) => panic!("{doc}: not rotating: {c:?}"),
            Err(e) => panic!("{doc}: {e}"),
        }
    }

    /// The source of a rotating setup.
    fn only(doc: Value, env: &[(&str, &str)]) -> Source {
        setup(doc, env).source
    }

    fn sts_of(s: Source) -> StsSource {
        match s {
            Source::AssumeRole(s, _) | Source::WebIdentity(s) => s,
            other => panic!("not STS: {other:?}"),
        }
    }

    fn container_of(doc: Value, env: &[(&str, &str)]) -> ContainerSource {
        match only(doc, env) {
            Source::Container(c) => c,
            other => panic!("not container: {other:?}"),
        }
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/presign";
    const STATIC_ENV: [(&str, &str); 3] = [
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", TOKEN),
    ];

    fn assume_role(extra: Value) -> Value {
        let mut a = json!({"region": "eu-west-1", "role_arn": ROLE});
        for (k, v) in extra.as_object().unwrap() {
            a[k] = v.clone();
        }
        json!({"source": "assume_role", "assume_role": a})
    }

    fn web_identity(extra: Value) -> Value {
        let mut w = json!({"region": "eu-west-1", "role_arn": ROLE});
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        json!({"source": "web_identity", "web_identity": w})
    }

    /// docs/credentials.md, credentials: with no `credentials` block the keys come
    /// from the VM environment, as before rotating sources existed.
    #[test]
    fn no_block_reads_the_environment() {
        let c = compile(None, &env_of(&STATIC_ENV)).unwrap();
        assert_eq!(c.source, CredentialsSource::Env);
        let k = c.fixed.unwrap();
        assert_eq!(
            (k.access_key_id(), k.session_token()),
            ("AKIDENV", Some(TOKEN))
        );
        assert!(c.rotating.is_none() && c.skipped.is_empty());
    }

    /// Static sources: `env` reads the variables, `inline` the block's keys
    /// (an empty session token is none); inline keys with any other source are
    /// refused (one of the three is enough), naming `credentials`.
    #[test]
    fn static_sources() {
        let c = compile_with(json!({"source": "env"}), &STATIC_ENV).unwrap();
        assert_eq!(c.source, CredentialsSource::Env);
        assert_eq!(c.fixed.unwrap().access_key_id(), "AKIDENV");
        let c = compile_with(
            json!({"source": "inline", "access_key_id": "AKIDIN", "secret_access_key": SECRET,
                   "session_token": ""}),
            &STATIC_ENV,
        )
        .unwrap();
        assert_eq!(c.source, CredentialsSource::Inline);
        let k = c.fixed.unwrap();
        assert_eq!((k.access_key_id(), k.session_token()), ("AKIDIN", None));
        assert!(c.rotating.is_none());
        let c = compile_with(
            json!({"source": "inline", "access_key_id": "AKIDIN", "secret_access_key": SECRET,
                   "session_token": TOKEN}),
            &[],
        )
        .unwrap();
        assert_eq!(c.fixed.unwrap().session_token(), Some(TOKEN));
        for source in [
            "env",
            "imds",
            "container",
            "assume_role",
            "web_identity",
            "chain",
        ] {
            for key in ["access_key_id", "secret_access_key", "session_token"] {
                let mut doc = assume_role(json!({}));
                doc["source"] = json!(source);
                if source != "assume_role" {
                    doc.as_object_mut().unwrap().remove("assume_role");
                }
                doc[key] = json!("x");
                let e = refusal(doc, &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c")]);
                assert_eq!(e.field, "credentials", "{source} {key}");
                assert!(e.reason.contains("only read with"), "{e}");
            }
        }
        assert_eq!(
            field_of(json!({"source": "inline", "secret_access_key": "s"}), &[]),
            "credentials.access_key_id"
        );
        assert_eq!(
            field_of(json!({"source": "inline", "access_key_id": "A"}), &[]),
            "credentials.secret_access_key"
        );
        let e = refusal(json!({"source": "vault"}), &[]);
        assert_eq!(e.field, "credentials.source");
        assert!(e.reason.contains("\"vault\""), "{e}");
    }

    /// docs/credentials.md, credentials: `chain` is only read with `"source": "chain"`.
    #[test]
    fn chain_is_only_read_with_source_chain() {
        let e = refusal(json!({"source": "imds", "chain": ["imds"]}), &[]);
        assert_eq!(e.field, "credentials.chain");
        let r = setup(json!({"source": "chain", "chain": ["imds"]}), &[]);
        assert_eq!(r.source.label(), "imds");
    }

    /// docs/credentials.md, credentials: each rotating source alone compiles to a
    /// one-source chain, with its defaults: the clusters of
    /// `envoy/credentials.yaml` (presign_imds, presign_container, presign_sts,
    /// presign_web_identity), 2000 ms per call, IMDS at 169.254.169.254 with a
    /// 21600 s token, STS at sts.<region>.amazonaws.com for 3600 s as session
    /// `envoy-presign`.
    #[test]
    fn each_source_and_its_defaults() {
        let s = only(json!({"source": "imds"}), &[]);
        assert_eq!(s.label(), "imds");
        assert_eq!(
            s,
            Source::Imds(ImdsSource {
                endpoint: Endpoint {
                    cluster: "presign_imds".into(),
                    authority: "169.254.169.254".into(),
                    timeout_ms: 2000,
                },
                token_ttl_secs: 21_600,
            })
        );
        let c = container_of(
            json!({"source": "container"}),
            &[(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            )],
        );
        assert_eq!(
            (
                c.endpoint.cluster.as_str(),
                c.endpoint.authority.as_str(),
                c.endpoint.timeout_ms,
                c.path.as_str(),
                c.authorization.as_deref()
            ),
            (
                "presign_container",
                "169.254.170.2",
                2000,
                "/v2/credentials/abc",
                None
            )
        );
        let s = only(assume_role(json!({})), &STATIC_ENV);
        assert_eq!(s.label(), "assume_role");
        let Source::AssumeRole(sts, BaseCredentials::Static(base)) = s else {
            panic!("{s:?}")
        };
        assert_eq!(base.access_key_id(), "AKIDENV", "base env by default");
        assert_eq!(
            sts,
            StsSource {
                endpoint: Endpoint {
                    cluster: "presign_sts".into(),
                    authority: "sts.eu-west-1.amazonaws.com".into(),
                    timeout_ms: 2000,
                },
                region: "eu-west-1".into(),
                role_arn: ROLE.into(),
                session_name: "envoy-presign".into(),
                external_id: None,
                duration_secs: 3600,
            }
        );
        let s = only(web_identity(json!({})), &[]);
        assert_eq!(s.label(), "web_identity");
        let w = sts_of(s);
        assert_eq!(w.endpoint.cluster, "presign_web_identity");
        assert_eq!(w.endpoint.authority, "sts.eu-west-1.amazonaws.com");
        assert_eq!(
            (w.duration_secs, w.session_name.as_str()),
            (3600, "envoy-presign")
        );
        // China's partition has its own domain.
        let w = sts_of(only(web_identity(json!({"region": "cn-north-1"})), &[]));
        assert_eq!(w.endpoint.authority, "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(
            SOURCE_LABELS,
            ["imds", "container", "assume_role", "web_identity"]
        );
    }

    /// Every setting of a source is read: clusters, authorities (Istio-style
    /// names too), timeouts, token TTL, role, session, external id, duration.
    #[test]
    fn settings_are_read() {
        let s = only(
            json!({"source": "imds", "imds": {"cluster": "outbound|80||169.254.169.254",
                   "authority": "metadata", "token_ttl": 60, "timeout_ms": 700}}),
            &[],
        );
        let Source::Imds(i) = s else { panic!() };
        assert_eq!(i.endpoint.cluster, "outbound|80||169.254.169.254");
        assert_eq!(i.endpoint.authority, "metadata");
        assert_eq!((i.endpoint.timeout_ms, i.token_ttl_secs), (700, 60));
        let a = sts_of(only(
            assume_role(
                json!({"cluster": "sts", "authority": "sts.example", "session_name": "s-1",
                               "external_id": "ext-42", "duration": 900, "timeout_ms": 30000}),
            ),
            &STATIC_ENV,
        ));
        assert_eq!(
            (
                a.endpoint.cluster.as_str(),
                a.endpoint.authority.as_str(),
                a.endpoint.timeout_ms
            ),
            ("sts", "sts.example", 30_000)
        );
        assert_eq!(
            (
                a.session_name.as_str(),
                a.external_id.as_deref(),
                a.duration_secs
            ),
            ("s-1", Some("ext-42"), 900)
        );
    }

    /// The environment the AWS SDKs read: AWS_REGION (then
    /// AWS_DEFAULT_REGION), AWS_ROLE_ARN (web identity only),
    /// AWS_ROLE_SESSION_NAME; the block's own setting wins, and an empty
    /// variable counts as unset.
    #[test]
    fn sts_settings_from_the_environment() {
        let doc = json!({"source": "web_identity"});
        let w = sts_of(only(
            doc.clone(),
            &[
                ("AWS_REGION", "us-west-2"),
                ("AWS_DEFAULT_REGION", "eu-central-1"),
                ("AWS_ROLE_ARN", ROLE),
                ("AWS_ROLE_SESSION_NAME", "pod-7"),
            ],
        ));
        assert_eq!(
            (
                w.region.as_str(),
                w.role_arn.as_str(),
                w.session_name.as_str()
            ),
            ("us-west-2", ROLE, "pod-7")
        );
        let w = sts_of(only(
            doc.clone(),
            &[
                ("AWS_REGION", ""),
                ("AWS_DEFAULT_REGION", "eu-central-1"),
                ("AWS_ROLE_ARN", ROLE),
            ],
        ));
        assert_eq!(w.region, "eu-central-1");
        assert_eq!(
            field_of(doc.clone(), &[("AWS_REGION", ""), ("AWS_ROLE_ARN", ROLE)]),
            "credentials.web_identity.region"
        );
        assert_eq!(
            field_of(
                doc.clone(),
                &[("AWS_REGION", "eu-west-1"), ("AWS_ROLE_ARN", "")]
            ),
            "credentials.web_identity.role_arn"
        );
        let w = sts_of(only(
            web_identity(json!({"session_name": "mine"})),
            &[
                ("AWS_REGION", "us-west-2"),
                ("AWS_ROLE_ARN", "arn:other"),
                ("AWS_ROLE_SESSION_NAME", "env"),
            ],
        ));
        assert_eq!(
            (
                w.region.as_str(),
                w.role_arn.as_str(),
                w.session_name.as_str()
            ),
            ("eu-west-1", ROLE, "mine")
        );
        // AssumeRole never takes AWS_ROLE_ARN (that is the web identity's role).
        let e = refusal(
            json!({"source": "assume_role", "assume_role": {"region": "eu-west-1"}}),
            &[("AWS_ROLE_ARN", ROLE), STATIC_ENV[0], STATIC_ENV[1]],
        );
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("credentials.assume_role.role_arn", "required")
        );
    }

    /// docs/credentials.md, credentials: every refusal names its field, under the block
    /// it belongs to; limits are inclusive (the last valid value passes).
    #[test]
    fn every_refusal_names_its_field() {
        let imds = |v: Value| json!({"source": "imds", "imds": v});
        let refused: Vec<(Value, &str)> = vec![
            (imds(json!({"token_ttl": 0})), "credentials.imds.token_ttl"),
            (
                imds(json!({"token_ttl": 21_601})),
                "credentials.imds.token_ttl",
            ),
            (
                imds(json!({"timeout_ms": 0})),
                "credentials.imds.timeout_ms",
            ),
            (
                imds(json!({"timeout_ms": 30_001})),
                "credentials.imds.timeout_ms",
            ),
            (imds(json!({"cluster": ""})), "credentials.imds.cluster"),
            (imds(json!({"cluster": "a b"})), "credentials.imds.cluster"),
            (imds(json!({"cluster": "a\tb"})), "credentials.imds.cluster"),
            (
                imds(json!({"cluster": "c".repeat(256)})),
                "credentials.imds.cluster",
            ),
            (
                imds(json!({"cluster": "c".repeat(300)})),
                "credentials.imds.cluster",
            ),
            (
                imds(json!({"authority": "x\u{7f}"})),
                "credentials.imds.authority",
            ),
            (
                json!({"source": "container", "container": {"relative_uri": "/a", "timeout_ms": 0}}),
                "credentials.container.timeout_ms",
            ),
            (
                json!({"source": "container", "container": {"relative_uri": "/a", "cluster": " "}}),
                "credentials.container.cluster",
            ),
            (
                assume_role(json!({"role_arn": null})),
                "credentials.assume_role.role_arn",
            ),
            (
                assume_role(json!({"role_arn": "role/presign"})),
                "credentials.assume_role.role_arn",
            ),
            (
                assume_role(json!({"role_arn": "arn:aws:iam::1:role/a b"})),
                "credentials.assume_role.role_arn",
            ),
            (
                assume_role(json!({"role_arn": format!("arn:{}", "r".repeat(2045))})),
                "credentials.assume_role.role_arn",
            ),
            (
                assume_role(json!({"region": "EU-WEST-1"})),
                "credentials.assume_role.region",
            ),
            (
                assume_role(json!({"region": "eu west"})),
                "credentials.assume_role.region",
            ),
            (
                assume_role(json!({"region": ""})),
                "credentials.assume_role.region",
            ),
            (
                assume_role(json!({"region": "a".repeat(33)})),
                "credentials.assume_role.region",
            ),
            (
                assume_role(json!({"session_name": "a"})),
                "credentials.assume_role.session_name",
            ),
            (
                assume_role(json!({"session_name": "a".repeat(65)})),
                "credentials.assume_role.session_name",
            ),
            (
                assume_role(json!({"session_name": "a b"})),
                "credentials.assume_role.session_name",
            ),
            (
                assume_role(json!({"session_name": "a/b"})),
                "credentials.assume_role.session_name",
            ),
            (
                assume_role(json!({"external_id": "x"})),
                "credentials.assume_role.external_id",
            ),
            (
                assume_role(json!({"external_id": "x".repeat(1225)})),
                "credentials.assume_role.external_id",
            ),
            (
                assume_role(json!({"external_id": "x y"})),
                "credentials.assume_role.external_id",
            ),
            (
                assume_role(json!({"duration": 899})),
                "credentials.assume_role.duration",
            ),
            (
                assume_role(json!({"duration": 43_201})),
                "credentials.assume_role.duration",
            ),
            (
                assume_role(json!({"timeout_ms": 0})),
                "credentials.assume_role.timeout_ms",
            ),
            (
                assume_role(json!({"cluster": ""})),
                "credentials.assume_role.cluster",
            ),
            (
                assume_role(json!({"authority": "a b"})),
                "credentials.assume_role.authority",
            ),
            (
                assume_role(json!({"base": "vault"})),
                "credentials.assume_role.base",
            ),
            (
                web_identity(json!({"region": "Eu"})),
                "credentials.web_identity.region",
            ),
            (
                web_identity(json!({"duration": 100})),
                "credentials.web_identity.duration",
            ),
            (
                web_identity(json!({"base": "imds"})),
                "credentials.web_identity.base",
            ),
            (
                web_identity(json!({"external_id": "ext-1"})),
                "credentials.web_identity.external_id",
            ),
            (
                web_identity(json!({"cluster": ""})),
                "credentials.web_identity.cluster",
            ),
            (json!({"source": "assume_role"}), "credentials.source"),
        ];
        for (doc, field) in refused {
            let e = refusal(doc.clone(), &STATIC_ENV);
            assert_eq!(e.field, field, "{doc}: {e}");
            assert!(!e.reason.is_empty(), "{doc}");
        }
        let accepted = vec![
            imds(json!({"token_ttl": 1, "timeout_ms": 1})),
            imds(json!({"token_ttl": 21_600, "timeout_ms": 30_000, "cluster": "c".repeat(255)})),
            assume_role(json!({"duration": 900, "session_name": "ab", "external_id": "xy"})),
            assume_role(json!({"duration": 43_200, "session_name": "=,.@_-aZ09",
                               "external_id": "x".repeat(1224)})),
            assume_role(json!({"session_name": "a".repeat(64)})),
            assume_role(json!({"region": "a".repeat(32)})),
            assume_role(json!({"role_arn": format!("arn:{}", "r".repeat(2044))})),
        ];
        for doc in accepted {
            if let Err(e) = compile_with(doc.clone(), &STATIC_ENV) {
                panic!("{doc}: {e}");
            }
        }
        let long = only(
            assume_role(json!({"session_name": "a".repeat(64)})),
            &STATIC_ENV,
        );
        assert_eq!(sts_of(long).session_name.len(), 64);
    }

    /// docs/credentials.md, container source: the relative URI goes to 169.254.170.2
    /// and comes before the full URI, as in the AWS SDKs; a configured
    /// `relative_uri`/`full_uri` wins over the environment; both configured
    /// is refused; the token comes from AWS_CONTAINER_AUTHORIZATION_TOKEN.
    #[test]
    fn container_uri_precedence_and_token() {
        let env_rel = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/env-rel");
        let env_full = (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        );
        let doc = json!({"source": "container"});
        let c = container_of(doc.clone(), &[env_rel, env_full]);
        assert_eq!(
            (c.endpoint.authority.as_str(), c.path.as_str()),
            ("169.254.170.2", "/env-rel")
        );
        let c = container_of(
            doc.clone(),
            &[env_full, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)],
        );
        assert_eq!(
            (
                c.endpoint.authority.as_str(),
                c.path.as_str(),
                c.authorization.as_deref()
            ),
            ("169.254.170.23", "/v1/credentials", Some(AUTH))
        );
        let c = container_of(
            json!({"source": "container", "container": {"full_uri": "https://creds.example/x", "cluster": "creds_tls"}}),
            &[env_rel],
        );
        assert_eq!(
            (
                c.endpoint.cluster.as_str(),
                c.endpoint.authority.as_str(),
                c.path.as_str()
            ),
            ("creds_tls", "creds.example", "/x")
        );
        let c = container_of(
            json!({"source": "container", "container": {"relative_uri": "/mine"}}),
            &[env_rel, env_full],
        );
        assert_eq!(c.path, "/mine");
        let e = refusal(
            json!({"source": "container", "container": {"relative_uri": "/a", "full_uri": "https://h/b"}}),
            &[],
        );
        assert_eq!(e.field, "credentials.container.full_uri");
        assert_eq!(field_of(doc.clone(), &[]), "credentials.container");
        for bad in ["rel", "/a b", "/\u{e9}"] {
            assert_eq!(
                field_of(
                    json!({"source": "container", "container": {"relative_uri": bad}}),
                    &[]
                ),
                "credentials.container.relative_uri",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(
                doc.clone(),
                &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "nope")]
            ),
            "credentials (VM environment AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
        );
        assert_eq!(
            field_of(
                doc.clone(),
                &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.0.0.1/c")]
            ),
            "credentials (VM environment AWS_CONTAINER_CREDENTIALS_FULL_URI)"
        );
        assert_eq!(
            field_of(
                json!({"source": "container", "container": {"full_uri": "ftp://h/c"}}),
                &[]
            ),
            "credentials.container.full_uri"
        );
        let long = format!("/{}", "p".repeat(2047));
        assert_eq!(
            container_of(
                json!({"source": "container", "container": {"relative_uri": long}}),
                &[]
            )
            .path
            .len(),
            2048
        );
        let too_long = format!("/{}", "p".repeat(2048));
        assert_eq!(
            field_of(
                json!({"source": "container", "container": {"relative_uri": too_long}}),
                &[]
            ),
            "credentials.container.relative_uri"
        );
    }

    /// docs/credentials.md, container source: the endpoint decides the cluster. ECS's
    /// relative URI (or a full URI to 169.254.170.2) goes to
    /// `presign_container`; EKS Pod Identity's full URI (169.254.170.23 or
    /// fd00:ec2::23, as the default chain finds it on EKS) to
    /// `presign_pod_identity`, whose listener adds the pod's token; any
    /// other endpoint (https, loopback) needs `container.cluster`, refused
    /// without it: the review found Pod Identity's calls sent to ECS's
    /// address, and an https URI's token sent to whatever the cluster was.
    #[test]
    fn the_endpoint_decides_the_container_cluster() {
        let cluster_of = |env: &[(&str, &str)]| {
            container_of(json!({"source": "chain"}), env)
                .endpoint
                .cluster
        };
        let full = |uri: &'static str| ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri);
        for (env, want) in [
            (
                vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/c")],
                "presign_container",
            ),
            (vec![full("http://169.254.170.2/v2/c")], "presign_container"),
            (
                vec![full("http://169.254.170.2:80/v2/c")],
                "presign_container",
            ),
            (
                vec![full("http://169.254.170.23/v1/credentials")],
                "presign_pod_identity",
            ),
            (
                vec![full("http://[fd00:ec2::23]/v1/credentials")],
                "presign_pod_identity",
            ),
            (
                vec![full("http://[FD00:EC2::23]:80/v1/credentials")],
                "presign_pod_identity",
            ),
        ] {
            assert_eq!(cluster_of(&env), want, "{env:?}");
        }
        for uri in [
            "https://169.254.170.23/v1/credentials",
            "https://creds.example/c",
            "http://127.0.0.1:9000/c",
            "http://localhost/c",
            "http://169.254.170.23:8080/v1/credentials",
        ] {
            let e = refusal(json!({"source": "container"}), &[full(uri)]);
            assert_eq!(e.field, "credentials.container.cluster", "{uri}");
            assert_eq!(
                e.reason.contains("TLS"),
                uri.starts_with("https"),
                "{uri}: {e}"
            );
        }
        // A named cluster is used as it is.
        let c = container_of(
            json!({"source": "container", "container": {"cluster": "mine"}}),
            &[full("http://169.254.170.23/v1/credentials")],
        );
        assert_eq!(c.endpoint.cluster, "mine");
    }

    /// docs/credentials.md, container source: a full URI is allowed as the AWS SDKs
    /// allow it: `https` to any host; `http` only to a loopback address,
    /// 169.254.170.2, 169.254.170.23 (EKS Pod Identity), fd00:ec2::23, or
    /// `localhost` (names cannot be resolved in the VM). The authority is
    /// lower-cased, a missing path is `/`.
    #[test]
    fn full_uri_hosts() {
        let ok = [
            (
                "https://Creds.Example.com/v1?x=1",
                "creds.example.com",
                "/v1?x=1",
            ),
            ("https://10.0.0.1:8443", "10.0.0.1:8443", "/"),
            ("http://127.0.0.1/c", "127.0.0.1", "/c"),
            ("http://127.9.8.7:51679/c", "127.9.8.7:51679", "/c"),
            ("http://169.254.170.2/v2/x", "169.254.170.2", "/v2/x"),
            (
                "http://169.254.170.23/v1/credentials",
                "169.254.170.23",
                "/v1/credentials",
            ),
            (
                "http://[fd00:ec2::23]/v1/credentials",
                "[fd00:ec2::23]",
                "/v1/credentials",
            ),
            ("http://[::1]:8080/c", "[::1]:8080", "/c"),
            ("http://localhost:9000/c", "localhost:9000", "/c"),
            ("http://LocalHost/c", "localhost", "/c"),
        ];
        for (uri, authority, path) in ok {
            assert_eq!(
                full_uri(uri),
                Ok((authority.to_string(), path.to_string())),
                "{uri}"
            );
        }
        let refused = [
            "http://169.254.171.23/c",
            "http://169.254.170.3/c",
            "http://169.254.170.22/c",
            "http://10.0.0.1/c",
            "http://[fd00:ec2::2]/c",
            "http://[fe80::1]/c",
            "http://creds.example/c",
            "http://localhost.example/c",
            "http://[::1/c",
            "https:///c",
            "https://user@h/c",
            "https://h/a b",
            "ftp://h/c",
            "h/c",
        ];
        for uri in refused {
            assert!(full_uri(uri).is_err(), "{uri} was allowed");
        }
        assert!(full_uri("http://10.0.0.1/c")
            .unwrap_err()
            .contains("use https"));
    }

    /// docs/credentials.md, assume_role: the call is signed by the base credentials:
    /// `env` (the default), `inline` (the top-level keys, read only then), or
    /// temporary ones fetched first from imds, container or web_identity.
    #[test]
    fn assume_role_base() {
        let base_of = |doc: Value, env: &[(&str, &str)]| match only(doc, env) {
            Source::AssumeRole(_, b) => b,
            other => panic!("{other:?}"),
        };
        match base_of(assume_role(json!({"base": "env"})), &STATIC_ENV) {
            BaseCredentials::Static(c) => assert_eq!(c.access_key_id(), "AKIDENV"),
            other => panic!("{other:?}"),
        }
        let e = refusal(assume_role(json!({})), &[]);
        assert_eq!(e.field, "credentials.assume_role.base");
        assert!(e.reason.contains("AWS_ACCESS_KEY_ID"), "{e}");
        let mut inline = assume_role(json!({"base": "inline"}));
        inline["access_key_id"] = json!("AKIDBASE");
        inline["secret_access_key"] = json!(SECRET);
        match base_of(inline.clone(), &STATIC_ENV) {
            BaseCredentials::Static(c) => {
                assert_eq!(
                    (c.access_key_id(), c.secret_access_key()),
                    ("AKIDBASE", SECRET)
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            field_of(assume_role(json!({"base": "inline"})), &STATIC_ENV),
            "credentials.access_key_id"
        );
        // Inline keys are read with base inline in a chain too.
        let mut chained = inline.clone();
        chained["source"] = json!("chain");
        chained["chain"] = json!(["assume_role"]);
        assert_eq!(setup(chained, &[]).source.label(), "assume_role");
        for (name, want) in [
            ("imds", "imds"),
            ("container", "container"),
            ("web_identity", "web_identity"),
        ] {
            let mut doc = assume_role(json!({"base": name}));
            if name == "web_identity" {
                doc["web_identity"] =
                    json!({"role_arn": "arn:aws:iam::1:role/web", "region": "us-east-1"});
            }
            if name == "container" {
                doc["container"] = json!({"relative_uri": "/c"});
            }
            match base_of(doc, &[]) {
                BaseCredentials::Fetched(b) => assert_eq!(b.label(), want),
                other => panic!("{other:?}"),
            }
        }
        // A fetched base is checked like the source itself.
        assert_eq!(
            field_of(assume_role(json!({"base": "container"})), &[]),
            "credentials.container"
        );
    }

    /// docs/credentials.md, chain: the first configured entry is the source, as the
    /// AWS SDKs resolve their chain (env keys included, wherever `env` stands);
    /// every other entry is named with why it is not used; configured entries
    /// shadowed by an earlier one (but the ambient `imds`) are `dropped`; a
    /// name twice, an unknown name, an empty chain or nothing configured is
    /// refused, naming the entry.
    #[test]
    fn chain_semantics() {
        let c = compile_with(json!({"source": "chain"}), &STATIC_ENV).unwrap();
        assert_eq!(c.source, CredentialsSource::Env);
        assert_eq!(c.fixed.unwrap().access_key_id(), "AKIDENV");
        assert!(c.rotating.is_none() && c.dropped.is_empty());
        assert_eq!(
            c.skipped,
            [
                "web_identity (no web_identity block and no AWS_ROLE_ARN)",
                "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)",
                "imds (configured, but env comes first)"
            ]
        );
        // Default order, nothing but IMDS configured.
        let c = compile_with(json!({"source": "chain"}), &[]).unwrap();
        assert_eq!(c.source, CredentialsSource::Rotating);
        assert!(c.fixed.is_err());
        assert_eq!(
            c.skipped,
            [
                "env (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set)",
                "web_identity (no web_identity block and no AWS_ROLE_ARN)",
                "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)"
            ]
        );
        let label = |c: &CompiledCredentials| c.rotating.as_ref().unwrap().source.label();
        assert_eq!(label(&c), "imds");
        // `env` after IMDS: IMDS is the source, env keys are shadowed (the
        // review's finding: env used to win from anywhere, silently).
        let c = compile_with(
            json!({"source": "chain", "chain": ["imds", "env"]}),
            &STATIC_ENV,
        )
        .unwrap();
        assert_eq!((c.source, label(&c)), (CredentialsSource::Rotating, "imds"));
        assert_eq!(c.skipped, ["env (configured, but imds comes first)"]);
        assert_eq!(c.dropped, ["env"]);
        // Each source applies through its block or its variables; the first
        // that applies is the source, a later IMDS is not "dropped".
        let all = json!({"source": "chain", "chain": ["assume_role", "web_identity", "container", "imds"]});
        for (env, want, skipped) in [
            (
                vec![("AWS_ROLE_ARN", ROLE), ("AWS_REGION", "eu-west-1")],
                "web_identity",
                vec![
                    "assume_role (no assume_role block)",
                    "container (no container block and no AWS_CONTAINER_CREDENTIALS_*_URI)",
                    "imds (configured, but web_identity comes first)",
                ],
            ),
            (
                vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c")],
                "container",
                vec![
                    "assume_role (no assume_role block)",
                    "web_identity (no web_identity block and no AWS_ROLE_ARN)",
                    "imds (configured, but container comes first)",
                ],
            ),
        ] {
            let c = compile_with(all.clone(), &env).unwrap();
            assert_eq!(label(&c), want, "{env:?}");
            assert_eq!(c.skipped, skipped, "{env:?}");
            assert!(c.dropped.is_empty(), "{env:?}");
        }
        // Every entry configured: the first is used, the others shadowed.
        let mut blocks = assume_role(json!({"base": "imds"}));
        blocks["source"] = json!("chain");
        blocks["chain"] = all["chain"].clone();
        blocks["web_identity"] = json!({"role_arn": ROLE, "region": "eu-west-1"});
        blocks["container"] = json!({"relative_uri": "/c"});
        let c = compile_with(blocks.clone(), &[]).unwrap();
        assert_eq!(label(&c), "assume_role");
        assert_eq!(c.dropped, ["web_identity", "container"]);
        assert_eq!(c.skipped.len(), 3, "{:?}", c.skipped);
        // A shadowed entry is still checked: a broken block is refused.
        blocks["container"] = json!({"relative_uri": "no-slash"});
        assert_eq!(field_of(blocks, &[]), "credentials.container.relative_uri");
        // An empty variable counts as unset.
        let c = compile_with(
            json!({"source": "chain", "chain": ["container", "imds"]}),
            &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")],
        )
        .unwrap();
        assert_eq!(label(&c), "imds");
        // Refusals.
        let e = refusal(
            json!({"source": "chain", "chain": ["imds", "container", "imds"]}),
            &[],
        );
        assert_eq!(e.field, "credentials.chain[2]");
        assert!(e.reason.contains("twice"), "{e}");
        assert_eq!(
            field_of(json!({"source": "chain", "chain": ["imds", "inline"]}), &[]),
            "credentials.chain[1]"
        );
        assert_eq!(
            field_of(json!({"source": "chain", "chain": []}), &[]),
            "credentials.chain"
        );
        let e = refusal(
            json!({"source": "chain", "chain": ["env", "container"]}),
            &[],
        );
        assert_eq!(e.field, "credentials.chain");
        assert!(
            e.reason.contains("no source is configured") && e.reason.contains("env ("),
            "{e}"
        );
        // A configured entry is validated with its chain position's block.
        assert_eq!(
            field_of(
                json!({"source": "chain", "chain": ["imds"], "imds": {"token_ttl": 0}}),
                &[]
            ),
            "credentials.imds.token_ttl"
        );
    }

    /// docs/credentials.md, refresh settings: defaults (900 s before expiry, 60 s URL
    /// margin, retries from 1 s to 30 s), limits inclusive, each refusal
    /// naming its field.
    #[test]
    fn refresh_settings_and_limits() {
        let with = |refresh: Value| json!({"source": "imds", "refresh": refresh});
        let r = setup(with(json!({})), &[]).refresh;
        assert_eq!(
            (
                r.before_ms,
                r.expiry_margin_ms,
                r.retry_min_ms,
                r.retry_max_ms
            ),
            (900_000, 60_000, 1_000, 30_000)
        );
        let r = setup(
            with(
                json!({"before": 7, "expiry_margin": 3, "retry_min_ms": 250, "retry_max_ms": 250}),
            ),
            &[],
        )
        .refresh;
        assert_eq!(
            (
                r.before_ms,
                r.expiry_margin_ms,
                r.retry_min_ms,
                r.retry_max_ms
            ),
            (7_000, 3_000, 250, 250)
        );
        // retry_max defaults to at least retry_min.
        let r = setup(with(json!({"retry_min_ms": 60_000})), &[]).refresh;
        assert_eq!((r.retry_min_ms, r.retry_max_ms), (60_000, 60_000));
        for ok in [
            json!({"before": 1, "expiry_margin": 0, "retry_min_ms": 100}),
            json!({"before": 43_200, "expiry_margin": 3600, "retry_min_ms": 600_000, "retry_max_ms": 3_600_000}),
        ] {
            if let Err(e) = compile_with(with(ok.clone()), &[]) {
                panic!("{ok}: {e}");
            }
        }
        for (bad, field) in [
            (json!({"before": 0}), "credentials.refresh.before"),
            (json!({"before": 43_201}), "credentials.refresh.before"),
            (
                json!({"expiry_margin": 3601}),
                "credentials.refresh.expiry_margin",
            ),
            (
                json!({"retry_min_ms": 99}),
                "credentials.refresh.retry_min_ms",
            ),
            (
                json!({"retry_min_ms": 600_001}),
                "credentials.refresh.retry_min_ms",
            ),
            (
                json!({"retry_min_ms": 500, "retry_max_ms": 499}),
                "credentials.refresh.retry_max_ms",
            ),
            (
                json!({"retry_max_ms": 3_600_001}),
                "credentials.refresh.retry_max_ms",
            ),
        ] {
            assert_eq!(field_of(with(bad.clone()), &[]), field, "{bad}");
        }
    }

    /// docs/credentials.md, refresh: one worker's claim to refresh lasts longer than
    /// the slowest refresh the chain can make (every call timing out: three
    /// for IMDS, one per STS or container call, the fetched base's first),
    /// plus 2 s.
    #[test]
    fn the_lease_covers_the_slowest_chain() {
        let lease = |doc: Value, env: &[(&str, &str)]| setup(doc, env).refresh.lease_ms;
        assert_eq!(
            lease(json!({"source": "imds", "imds": {"timeout_ms": 1000}}), &[]),
            5_000
        );
        assert_eq!(
            lease(
                json!({"source": "container", "container": {"relative_uri": "/c", "timeout_ms": 700}}),
                &[]
            ),
            2_700
        );
        assert_eq!(lease(web_identity(json!({"timeout_ms": 900})), &[]), 2_900);
        assert_eq!(
            lease(assume_role(json!({"timeout_ms": 800})), &STATIC_ENV),
            2_800
        );
        let mut doc = assume_role(json!({"timeout_ms": 800, "base": "imds"}));
        doc["imds"] = json!({"timeout_ms": 500});
        assert_eq!(lease(doc, &[]), 800 + 1_500 + 2_000);
        // A chain's lease is its chosen source's: only that one is asked.
        let doc = json!({"source": "chain", "chain": ["container", "imds"],
                         "container": {"relative_uri": "/c", "timeout_ms": 300},
                         "imds": {"timeout_ms": 100}});
        assert_eq!(lease(doc, &[]), 300 + 2_000);
    }

    /// docs/credentials.md, refresh: credentials are shared under a fingerprint of the
    /// setup, so a changed setting never adopts the old setup's credentials;
    /// the fingerprint is a hash (16 hex digits) and carries no secret.
    #[test]
    fn the_fingerprint_changes_with_any_setting_and_hides_secrets() {
        let fp = |doc: Value, env: &[(&str, &str)]| setup(doc, env).fingerprint;
        let base = assume_role(json!({}));
        let set = |k: &str, v: Value| {
            let mut d = base.clone();
            d["assume_role"][k] = v;
            d
        };
        let mut inline = set("base", json!("inline"));
        inline["access_key_id"] = json!("AKIDBASE");
        inline["secret_access_key"] = json!(SECRET);
        let mut inline_secret = inline.clone();
        inline_secret["secret_access_key"] = json!("another-secret");
        let mut inline_id = inline.clone();
        inline_id["access_key_id"] = json!("AKIDBASE2");
        let container = |extra: Value| {
            let mut c = json!({"relative_uri": "/c"});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            json!({"source": "container", "container": c})
        };
        let env_auth = [("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)];
        let prints = vec![
            ("base", fp(base.clone(), &STATIC_ENV)),
            ("region", fp(set("region", json!("eu-west-2")), &STATIC_ENV)),
            (
                "role",
                fp(set("role_arn", json!("arn:aws:iam::1:role/b")), &STATIC_ENV),
            ),
            (
                "session",
                fp(set("session_name", json!("other")), &STATIC_ENV),
            ),
            (
                "external id",
                fp(set("external_id", json!("ext-1")), &STATIC_ENV),
            ),
            ("duration", fp(set("duration", json!(7200)), &STATIC_ENV)),
            ("cluster", fp(set("cluster", json!("sts2")), &STATIC_ENV)),
            (
                "authority",
                fp(set("authority", json!("sts.example")), &STATIC_ENV),
            ),
            ("timeout", fp(set("timeout_ms", json!(2001)), &STATIC_ENV)),
            (
                "env base key",
                fp(
                    base.clone(),
                    &[("AWS_ACCESS_KEY_ID", "AKID2"), STATIC_ENV[1]],
                ),
            ),
            (
                "env base secret",
                fp(
                    base.clone(),
                    &[STATIC_ENV[0], ("AWS_SECRET_ACCESS_KEY", "s2")],
                ),
            ),
            ("inline base", fp(inline.clone(), &[])),
            ("inline secret", fp(inline_secret, &[])),
            ("inline id", fp(inline_id, &[])),
            ("imds base", fp(set("base", json!("imds")), &[])),
            ("imds", fp(json!({"source": "imds"}), &[])),
            (
                "imds ttl",
                fp(json!({"source": "imds", "imds": {"token_ttl": 60}}), &[]),
            ),
            ("container", fp(container(json!({})), &[])),
            (
                "container path",
                fp(container(json!({"relative_uri": "/d"})), &[]),
            ),
            ("container token", fp(container(json!({})), &env_auth)),
            (
                "container other token",
                fp(
                    container(json!({})),
                    &[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "other")],
                ),
            ),
            ("web identity", fp(web_identity(json!({})), &[])),
        ];
        for (i, (a, pa)) in prints.iter().enumerate() {
            assert_eq!(pa.len(), 16, "{a}: {pa}");
            assert!(pa.bytes().all(|b| b.is_ascii_hexdigit()), "{a}: {pa}");
            for (b, pb) in prints.iter().skip(i + 1) {
                assert_ne!(pa, pb, "{a} and {b} share a fingerprint");
            }
        }
        // The same setup, the same fingerprint (every worker, every restart);
        // a chain is the source it resolves to (the same credentials).
        assert_eq!(fp(base.clone(), &STATIC_ENV), prints[0].1);
        assert_eq!(
            fp(
                json!({"source": "chain", "chain": ["imds", "container"]}),
                &[]
            ),
            fp(json!({"source": "imds"}), &[])
        );
        assert_eq!(fp(inline, &[]), prints[11].1);
    }

    /// docs/operations.md, what is never exposed: no secret key, session token or
    /// container authorization token appears in the compiled setup's Debug
    /// (logged at startup), nor in any refusal.
    #[test]
    fn no_secret_in_debug_or_errors() {
        let mut doc = assume_role(json!({"base": "inline"}));
        doc["access_key_id"] = json!("AKIDBASE");
        doc["secret_access_key"] = json!(SECRET);
        doc["session_token"] = json!(TOKEN);
        let c = compile_with(doc, &[]).unwrap();
        let c2 = compile_with(
            json!({"source": "chain", "chain": ["container", "assume_role"],
                   "assume_role": {"region": "eu-west-1", "role_arn": ROLE}}),
            &[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
                STATIC_ENV[0],
                STATIC_ENV[1],
                STATIC_ENV[2],
            ],
        )
        .unwrap();
        let shown = format!("{c:?} {c2:?}");
        for secret in [SECRET, TOKEN, AUTH] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("AKIDBASE") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(
            shown.contains("169.254.170.23@presign_pod_identity (2000 ms)"),
            "endpoints show where calls go: {shown}"
        );
        let errors = [
            refusal(
                json!({"source": "env", "secret_access_key": SECRET, "session_token": TOKEN}),
                &STATIC_ENV,
            ),
            refusal(
                json!({"source": "inline", "secret_access_key": SECRET}),
                &[],
            ),
            refusal(
                json!({"source": "imds", "session_token": TOKEN}),
                &STATIC_ENV,
            ),
            refusal(
                json!({"source": "container"}),
                &[
                    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.1.1/c"),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
                ],
            ),
            refusal(assume_role(json!({"duration": 1})), &STATIC_ENV),
        ];
        for e in errors {
            let shown = format!("{e} {e:?}");
            for secret in [SECRET, TOKEN, AUTH] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }

    /// docs/credentials.md, Rotating credentials: timing under which credentials stop
    /// signing before they are refreshed is refused, naming the field;
    /// `Config::parse` checks it against the largest origin `min_remaining`.
    #[test]
    fn timing_that_lapses_before_the_refresh_is_refused() {
        let mut r = setup(
            json!({"source": "imds", "refresh": {"before": 100, "expiry_margin": 60}}),
            &[],
        );
        assert_eq!(check_timing(&mut r, 38_000), Ok(()));
        let e = check_timing(&mut r, 39_000).unwrap_err();
        assert_eq!(e.field, "credentials.refresh.before");
        assert!(
            e.reason.contains("(100 s)") && e.reason.contains("(100 s)"),
            "{e}"
        );
        let sts = json!({"source": "web_identity",
                         "web_identity": {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r", "duration": 900},
                         "refresh": {"before": 3000, "expiry_margin": 300}});
        let mut r = setup(sts, &[]);
        assert_eq!(check_timing(&mut r, 148_000), Ok(()));
        let e = check_timing(&mut r, 149_000).unwrap_err();
        assert_eq!(e.field, "credentials.web_identity.duration");
        let sts = json!({"source": "assume_role",
                         "assume_role": {"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/r", "duration": 900},
                         "refresh": {"before": 3000, "expiry_margin": 300}});
        let mut r = setup(
            sts,
            &[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "s")],
        );
        assert_eq!(check_timing(&mut r, 148_000), Ok(()));
        let e = check_timing(&mut r, 149_000).unwrap_err();
        assert_eq!(e.field, "credentials.assume_role.duration");
        // Static keys are never checked; through Config::parse the origins count.
        let doc = |min_remaining: u64| {
            json!({"credentials": {"source": "imds", "refresh": {"before": 100, "expiry_margin": 60}},
                   "origins": [{"name": "m", "match": {"prefix": "/m/"}, "endpoint": "http://127.0.0.1:1",
                                "bucket": "bucket", "region": "us-east-1", "expires_in": 3600,
                                "refresh_before": 600, "min_remaining": min_remaining}]})
        };
        let parse = |d: Value| crate::config::Config::parse(d.to_string().as_bytes(), &|_| None);
        assert!(parse(doc(38)).is_ok());
        assert_eq!(
            parse(doc(39)).unwrap_err().field,
            "credentials.refresh.before"
        );
    }

    /// A block no source of the document reads is refused, naming it, rather
    /// than silently ignored (a typo, a source left out of the chain); so are
    /// inline keys beside an `assume_role` the document never uses.
    #[test]
    fn blocks_no_source_reads_are_refused() {
        let imds = json!({"timeout_ms": 500});
        for (doc, field) in [
            (json!({"source": "env", "imds": imds}), "credentials.imds"),
            (
                json!({"source": "container", "container": {"relative_uri": "/c"}, "imds": imds}),
                "credentials.imds",
            ),
            (
                json!({"source": "chain", "chain": ["imds"], "imds": imds,
                    "container": {"relative_uri": "/c"}}),
                "credentials.container",
            ),
            (
                json!({"source": "inline", "access_key_id": "A", "secret_access_key": "s",
                    "refresh": {"before": 600}}),
                "credentials.refresh",
            ),
            (
                json!({"source": "imds", "access_key_id": "A", "secret_access_key": "s",
                    "assume_role": {"base": "inline", "role_arn": "arn:aws:iam::1:role/r", "region": "eu-west-1"}}),
                "credentials.assume_role",
            ),
        ] {
            let e = refusal(doc.clone(), &[]);
            assert_eq!(e.field, field, "{doc}");
        }
        // The default chain reads every block but assume_role's.
        let doc = json!({"source": "chain", "imds": imds, "container": {"relative_uri": "/c"}});
        assert_eq!(setup(doc, &[]).source.label(), "container");
        // A chain's assume_role reads its base's block.
        let doc = json!({"source": "chain", "chain": ["assume_role"], "imds": imds,
                         "assume_role": {"base": "imds", "role_arn": "arn:aws:iam::1:role/r", "region": "eu-west-1"}});
        assert_eq!(setup(doc, &[]).source.label(), "assume_role");
    }
}
