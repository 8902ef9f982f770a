//! The rotating sources, compiled: where each call goes (cluster,
//! authority, timeout) and what it asks for. `rotation/` fetches from them.

use std::fmt;

use crate::sigv4::credentials::Credentials;

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

/// The container endpoint of ECS (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
pub const ECS_CONTAINER_AUTHORITY: &str = "169.254.170.2";
/// The instance metadata service.
pub const IMDS_AUTHORITY: &str = "169.254.169.254";

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
