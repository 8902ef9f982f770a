//! The credential providers' protocols as a state machine: which HTTP call
//! comes next, and what an answer means. Pure: the glue dispatches each
//! `Call` with `dispatch_http_call` and feeds the answer back.
//!
//! - IMDSv2: `PUT /latest/api/token`, then the role name, then its credentials.
//! - Container endpoint: one `GET` (ECS relative URI, or a full URI).
//! - STS `AssumeRole`: a `GET` signed with SigV4 (service `sts`) by the base
//!   credentials, fetched first when they are themselves temporary.
//! - STS `AssumeRoleWithWebIdentity`: an unsigned `GET`; the cluster (an
//!   Envoy internal listener) appends the token, which the VM cannot read.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::credentials::{BaseCredentials, Endpoint, ImdsSource, Source, StsSource};
/// Re-exported: the failures were defined here, and callers name them so.
pub use crate::rotation::failure::Failure;
use crate::rotation::now::Now;
use crate::rotation::parse::{
    parse_container_credentials, parse_imds_credentials, parse_imds_role, parse_sts_credentials,
    ParseError, StsAction,
};
use crate::sigv4::canonical::format_query_into;
use crate::sigv4::credentials::Credentials;

/// The IMDSv2 token's lifetime header, on the request and the answer.
pub const IMDS_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The IMDSv2 token header on metadata reads.
pub const IMDS_TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const IMDS_ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const STS_VERSION: &str = "2011-06-15";

/// One HTTP call for the glue to dispatch.
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    /// Envoy cluster.
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) first, then headers.
    pub headers: Vec<(String, String)>,
    /// Timeout, milliseconds (never 0).
    pub timeout_ms: u64,
}

/// Header names whose values are secrets, redacted from Debug output.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-security-token",
    IMDS_TOKEN_HEADER,
    "x-amz-content-sha256",
];

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if SECRET_HEADERS.contains(&k.as_str()) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Call")
            .field("cluster", &self.cluster)
            .field("headers", &headers)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Call {
    fn new(endpoint: &Endpoint, method: &str, path: &str) -> Self {
        Self {
            cluster: endpoint.cluster.clone(),
            headers: vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                (":authority".into(), endpoint.authority.clone()),
            ],
            timeout_ms: endpoint.timeout_ms,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A header's value (the first), for tests and the glue.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What came back from a dispatched call.
#[derive(Clone, Copy)]
pub struct Reply<'a> {
    /// HTTP status; 0 when there was no response (reset, connection failure).
    pub status: u16,
    /// The body, already capped by the glue.
    pub body: &'a [u8],
}

impl fmt::Debug for Reply<'_> {
    /// The status and the body's size: the body holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({}, {} bytes)", self.status, self.body.len())
    }
}

/// What to do next.
#[derive(Debug)]
pub enum Step {
    /// Dispatch this call and feed its answer to `Fetch::on_reply`.
    Call(Call),
    /// The source answered with these credentials.
    Done(Credentials),
    /// The source failed.
    Failed(Failure),
}

enum Stage {
    NotStarted,
    ImdsToken,
    ImdsRole {
        token: String,
    },
    ImdsCredentials,
    Container,
    /// The base credentials of an `AssumeRole` are being fetched.
    Base(Box<Fetch>),
    Sts(StsAction),
}

impl fmt::Debug for Stage {
    /// The stage's name; never the IMDSv2 token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::NotStarted => f.write_str("NotStarted"),
            Stage::ImdsToken => f.write_str("ImdsToken"),
            Stage::ImdsRole { .. } => f.write_str("ImdsRole { token: <redacted> }"),
            Stage::ImdsCredentials => f.write_str("ImdsCredentials"),
            Stage::Container => f.write_str("Container"),
            Stage::Base(inner) => f.debug_tuple("Base").field(inner).finish(),
            Stage::Sts(action) => f.debug_tuple("Sts").field(action).finish(),
        }
    }
}

/// One refresh through one source.
#[derive(Debug)]
pub struct Fetch {
    source: Source,
    stage: Stage,
}

impl Fetch {
    /// A fetch through `source`; nothing is sent until `begin`.
    pub fn new(source: &Source) -> Self {
        Self {
            source: source.clone(),
            stage: Stage::NotStarted,
        }
    }

    /// The source's metric label.
    pub fn label(&self) -> &'static str {
        self.source.label()
    }

    /// The first call.
    pub fn begin(&mut self, now: Now) -> Step {
        match &self.source {
            Source::Imds(s) => {
                self.stage = Stage::ImdsToken;
                Step::Call(
                    Call::new(&s.endpoint, "PUT", "/latest/api/token")
                        .header(IMDS_TTL_HEADER, &s.token_ttl_secs.to_string()),
                )
            }
            Source::Container(s) => {
                self.stage = Stage::Container;
                let call =
                    Call::new(&s.endpoint, "GET", &s.path).header("accept", "application/json");
                Step::Call(match &s.authorization {
                    Some(a) => call.header("authorization", a),
                    None => call,
                })
            }
            Source::WebIdentity(s) => {
                self.stage = Stage::Sts(StsAction::AssumeRoleWithWebIdentity);
                Step::Call(web_identity_call(s))
            }
            Source::AssumeRole(s, BaseCredentials::Static(base)) => {
                self.stage = Stage::Sts(StsAction::AssumeRole);
                assume_role_call(s, base, now)
            }
            Source::AssumeRole(_, BaseCredentials::Fetched(base)) => {
                let mut inner = Box::new(Fetch::new(base));
                let step = inner.begin(now);
                self.stage = Stage::Base(inner);
                step
            }
        }
    }

    /// Consumes the answer to the last call.
    pub fn on_reply(&mut self, reply: Reply<'_>, now: Now) -> Step {
        let stage = std::mem::replace(&mut self.stage, Stage::NotStarted);
        if let Stage::Base(mut inner) = stage {
            return match inner.on_reply(reply, now) {
                Step::Done(base) => match &self.source {
                    Source::AssumeRole(s, _) => {
                        self.stage = Stage::Sts(StsAction::AssumeRole);
                        assume_role_call(s, &base, now)
                    }
                    _ => Step::Failed(Failure::Dispatch),
                },
                step @ Step::Call(_) => {
                    self.stage = Stage::Base(inner);
                    step
                }
                failed => failed,
            };
        }
        if !(200..300).contains(&reply.status) {
            return Step::Failed(Failure::of_answer(reply.status, reply.body));
        }
        let parsed = match (stage, &self.source) {
            (Stage::ImdsToken, Source::Imds(s)) => {
                return match imds_token(reply.body) {
                    Some(token) => {
                        let call = imds_read(s, IMDS_ROLE_PATH, &token);
                        self.stage = Stage::ImdsRole { token };
                        Step::Call(call)
                    }
                    None => Step::Failed(Failure::Parse(ParseError::Malformed)),
                };
            }
            (Stage::ImdsRole { token }, Source::Imds(s)) => {
                return match parse_imds_role(reply.body) {
                    Ok(role) => {
                        self.stage = Stage::ImdsCredentials;
                        Step::Call(imds_read(s, &format!("{IMDS_ROLE_PATH}{role}"), &token))
                    }
                    Err(e) => Step::Failed(Failure::Parse(e)),
                };
            }
            (Stage::ImdsCredentials, Source::Imds(_)) => parse_imds_credentials(reply.body, now.ms),
            (Stage::Container, Source::Container(_)) => {
                parse_container_credentials(reply.body, now.ms)
            }
            (Stage::Sts(action), Source::WebIdentity(_) | Source::AssumeRole(..)) => {
                parse_sts_credentials(reply.body, action, now.ms)
            }
            // An answer with no call outstanding: nothing to make of it.
            _ => return Step::Failed(Failure::Abandoned),
        };
        match parsed {
            Ok(c) if c.expires_at_ms().is_some_and(|e| e > now.ms) => Step::Done(c),
            Ok(_) => Step::Failed(Failure::Expired),
            Err(e) => Step::Failed(Failure::Parse(e)),
        }
    }
}

/// The IMDSv2 token: the body, trimmed; a header value, so visible ASCII.
fn imds_token(body: &[u8]) -> Option<String> {
    let t = std::str::from_utf8(body).ok()?.trim();
    (!t.is_empty() && t.len() <= 4096 && t.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| t.to_string())
}

fn imds_read(s: &ImdsSource, path: &str, token: &str) -> Call {
    Call::new(&s.endpoint, "GET", path).header(IMDS_TOKEN_HEADER, token)
}

/// `/?Action=…&…` with the parameters in SigV4 canonical order (sorted by
/// name, every value encoded once), so the path is its own canonical query.
fn sts_path(action: StsAction, s: &StsSource, with_external_id: bool) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("Action", action.as_str().to_string()),
        ("DurationSeconds", s.duration_secs.to_string()),
        ("RoleArn", s.role_arn.clone()),
        ("RoleSessionName", s.session_name.clone()),
        ("Version", STS_VERSION.to_string()),
    ];
    if let (true, Some(x)) = (with_external_id, &s.external_id) {
        params.push(("ExternalId", x.clone()));
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let owned: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut path = String::from("/?");
    format_query_into(&mut path, &owned);
    path
}

fn web_identity_call(s: &StsSource) -> Call {
    let path = sts_path(StsAction::AssumeRoleWithWebIdentity, s, false);
    Call::new(&s.endpoint, "GET", &path).header("accept", "application/json")
}

/// The `AssumeRole` call, signed in headers by `base` with aws-sigv4's own
/// signer (service `sts`, the region of the endpoint, empty payload).
fn assume_role_call(s: &StsSource, base: &Credentials, now: Now) -> Step {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4::SigningParams;
    let path = sts_path(StsAction::AssumeRole, s, true);
    let identity = aws_credential_types::Credentials::new(
        base.access_key_id(),
        base.secret_access_key(),
        base.session_token().map(str::to_string),
        base.expires_at_ms()
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        "envoy-presign",
    )
    .into();
    let Ok(params) = SigningParams::builder()
        .identity(&identity)
        .region(&s.region)
        .name("sts")
        .time(now.time)
        .settings(SigningSettings::default())
        .build()
    else {
        return Step::Failed(Failure::Dispatch);
    };
    let authority = s.endpoint.authority.as_str();
    let uri = format!("https://{authority}{path}");
    let headers = [("host", authority)];
    let Ok(request) = SignableRequest::new(
        "GET",
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    ) else {
        return Step::Failed(Failure::Dispatch);
    };
    let Ok(signed) = sign(request, &params.into()) else {
        return Step::Failed(Failure::Dispatch);
    };
    let (instructions, _) = signed.into_parts();
    let mut call = Call::new(&s.endpoint, "GET", &path).header("accept", "application/json");
    for (name, value) in instructions.headers() {
        call = call.header(name, value);
    }
    Step::Call(call)
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
