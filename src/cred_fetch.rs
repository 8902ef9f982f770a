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

use crate::cache::unix_ms;
use crate::canonical::format_query_into;
use crate::cred_config::{BaseCredentials, Endpoint, ImdsSource, Source, StsSource};
use crate::cred_parse::{
    parse_container_credentials, parse_imds_credentials, parse_imds_role, parse_sts_credentials,
    ParseError, StsAction,
};
use crate::credentials::Credentials;
use crate::metrics::REFRESH_RESULTS;

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

/// Why a refresh through one source failed: a stable category for metrics
/// and logs, never a value from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Envoy refused the call (unknown cluster, bad arguments).
    Dispatch,
    /// No response: reset or connection failure.
    Transport,
    /// 504: the call's timeout (or the cluster's) ran out.
    Timeout,
    /// A 4xx answer (IMDS token refused, STS access denied, bad signature).
    Status4xx,
    /// A 5xx answer other than 504 (503: no healthy upstream).
    Status5xx,
    /// A 2xx answer the parser refused.
    Parse(ParseError),
    /// Credentials that have already expired.
    Expired,
    /// The refreshing worker stopped hearing back (its VM went away).
    Abandoned,
}

impl Failure {
    /// Stable category (the `result` label of the refresh counter).
    pub fn category(self) -> &'static str {
        REFRESH_RESULTS
            .get(usize::from(self.code()))
            .copied()
            .unwrap_or("unknown")
    }

    /// The `last_failure` gauge's value: its index in `REFRESH_RESULTS`.
    pub fn code(self) -> u8 {
        match self {
            Failure::Dispatch => 1,
            Failure::Transport => 2,
            Failure::Timeout => 3,
            Failure::Status4xx => 4,
            Failure::Status5xx => 5,
            Failure::Parse(_) => 6,
            Failure::Expired => 7,
            Failure::Abandoned => 8,
        }
    }

    /// What the log line says: the category, and for a refused answer what
    /// the parser refused (a field's name or the reason, never a value from
    /// the answer: `ParseError` carries none).
    pub fn describe(self) -> String {
        match self {
            Failure::Parse(e) => format!("{} ({e})", self.category()),
            other => other.category().to_string(),
        }
    }

    /// The category of a non-2xx answer. Envoy answers a call it could not
    /// deliver itself, with a 503 whose body says so (connection refused or
    /// reset, no healthy host): that is the endpoint being unreachable, not
    /// an answer from it.
    fn of_reply(reply: Reply<'_>) -> Self {
        const ENVOY_UNREACHABLE: [&[u8]; 2] = [b"upstream connect error", b"no healthy upstream"];
        match reply.status {
            0 => Failure::Transport,
            503 if ENVOY_UNREACHABLE.iter().any(|p| reply.body.starts_with(p)) => {
                Failure::Transport
            }
            504 => Failure::Timeout,
            400..=499 => Failure::Status4xx,
            _ => Failure::Status5xx,
        }
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
    pub fn begin(&mut self, now: SystemTime) -> Step {
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
    pub fn on_reply(&mut self, reply: Reply<'_>, now: SystemTime) -> Step {
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
            return Step::Failed(Failure::of_reply(reply));
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
            (Stage::ImdsCredentials, Source::Imds(_)) => {
                parse_imds_credentials(reply.body, unix_ms(now))
            }
            (Stage::Container, Source::Container(_)) => {
                parse_container_credentials(reply.body, unix_ms(now))
            }
            (Stage::Sts(action), Source::WebIdentity(_) | Source::AssumeRole(..)) => {
                parse_sts_credentials(reply.body, action, unix_ms(now))
            }
            // An answer with no call outstanding: nothing to make of it.
            _ => return Step::Failed(Failure::Abandoned),
        };
        match parsed {
            Ok(c)
                if c.expires_at_ms()
                    .is_some_and(|e| e > crate::cache::unix_ms(now)) =>
            {
                Step::Done(c)
            }
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
fn assume_role_call(s: &StsSource, base: &Credentials, now: SystemTime) -> Step {
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
        .time(now)
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
mod tests {
    use super::*;
    use crate::cred_config::ContainerSource;
    use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
    use sha2::{Digest, Sha256};
    use std::time::UNIX_EPOCH;

    /// 2023-11-14T22:13:20Z.
    const NOW_SECS: u64 = 1_700_000_000;
    /// 2023-11-15T00:00:00Z, when the credentials handed out expire.
    const EXPIRES_SECS: u64 = 1_700_006_400;
    const ROLE: &str = "arn:aws:iam::123456789012:role/presign";

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn endpoint(cluster: &str, authority: &str, timeout_ms: u64) -> Endpoint {
        Endpoint {
            cluster: cluster.into(),
            authority: authority.into(),
            timeout_ms,
        }
    }

    fn imds() -> Source {
        Source::Imds(ImdsSource {
            endpoint: endpoint("presign_imds", "169.254.169.254", 1500),
            token_ttl_secs: 21_600,
        })
    }

    fn container(authorization: Option<&str>) -> Source {
        Source::Container(ContainerSource {
            endpoint: endpoint("presign_container", "169.254.170.23", 700),
            path: "/v1/credentials".into(),
            authorization: authorization.map(str::to_string),
        })
    }

    fn sts(external_id: Option<&str>) -> StsSource {
        StsSource {
            endpoint: endpoint("presign_sts", "sts.eu-west-1.amazonaws.com", 900),
            region: "eu-west-1".into(),
            role_arn: ROLE.into(),
            session_name: "envoy-presign".into(),
            external_id: external_id.map(str::to_string),
            duration_secs: 3600,
        }
    }

    fn assume_role(base: BaseCredentials) -> Source {
        Source::AssumeRole(sts(Some("ext/42 x")), base)
    }

    fn ok(body: &str) -> Reply<'_> {
        Reply {
            status: 200,
            body: body.as_bytes(),
        }
    }

    fn call(step: Step) -> Call {
        match step {
            Step::Call(c) => c,
            other => panic!("expected a call, got {other:?}"),
        }
    }

    fn done(step: Step) -> Credentials {
        match step {
            Step::Done(c) => c,
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    fn failed(step: Step) -> Failure {
        match step {
            Step::Failed(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn headers(c: &Call) -> Vec<(&str, &str)> {
        c.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn imds_json(id: &str, secret: &str, token: &str) -> String {
        format!(
            r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"{id}","SecretAccessKey":"{secret}","Token":"{token}","Expiration":"2023-11-15T00:00:00Z"}}"#
        )
    }

    fn sts_json(action: &str) -> String {
        format!(
            r#"{{"{action}Response":{{"{action}Result":{{"Credentials":{{"AccessKeyId":"ASIAROLE","SecretAccessKey":"role-secret","SessionToken":"role-token","Expiration":{EXPIRES_SECS}}}}}}}}}"#
        )
    }

    /// Drives IMDS through its token and role name to the credentials call.
    fn imds_to_credentials_call(f: &mut Fetch) -> Call {
        f.begin(now());
        f.on_reply(ok("tok-1\n"), now());
        call(f.on_reply(ok("presign-role\n"), now()))
    }

    /// The design note's IMDSv2 protocol (docs/design/rotating-credentials.md
    /// §2): PUT /latest/api/token with the TTL header, then the role name and
    /// its credentials, both carrying the token; IMDSv2 only.
    /// The log line of a failed refresh: the category, and for a refused
    /// answer what was refused, never a value of the answer.
    #[test]
    fn failures_describe_themselves_without_values() {
        assert_eq!(Failure::Timeout.describe(), "timeout");
        let far = Failure::Parse(ParseError::ExpirationTooFar).describe();
        assert!(far.starts_with("parse (") && far.contains("36 h"), "{far}");
        assert_eq!(
            Failure::Parse(ParseError::Malformed).describe(),
            format!("parse ({})", ParseError::Malformed)
        );
    }

    #[test]
    fn imds_is_three_calls_carrying_the_token() {
        let mut f = Fetch::new(&imds());
        assert_eq!(f.label(), "imds");
        let put = call(f.begin(now()));
        assert_eq!(
            (put.cluster.as_str(), put.timeout_ms),
            ("presign_imds", 1500)
        );
        assert_eq!(
            headers(&put),
            [
                (":method", "PUT"),
                (":path", "/latest/api/token"),
                (":authority", "169.254.169.254"),
                ("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
            ]
        );
        let role = call(f.on_reply(ok(" tok-1\n"), now()));
        assert_eq!(
            headers(&role),
            [
                (":method", "GET"),
                (":path", "/latest/meta-data/iam/security-credentials/"),
                (":authority", "169.254.169.254"),
                ("x-aws-ec2-metadata-token", "tok-1"),
            ]
        );
        assert_eq!(
            (role.cluster.as_str(), role.timeout_ms),
            ("presign_imds", 1500)
        );
        let creds = call(f.on_reply(ok("presign-role\nother\n"), now()));
        assert_eq!(
            headers(&creds),
            [
                (":method", "GET"),
                (
                    ":path",
                    "/latest/meta-data/iam/security-credentials/presign-role"
                ),
                (":authority", "169.254.169.254"),
                ("x-aws-ec2-metadata-token", "tok-1"),
            ]
        );
        let c = done(f.on_reply(
            ok(&imds_json("ASIAIMDS", "imds-secret", "imds-token")),
            now(),
        ));
        assert_eq!(c.access_key_id(), "ASIAIMDS");
        assert_eq!(c.secret_access_key(), "imds-secret");
        assert_eq!(c.session_token(), Some("imds-token"));
        assert_eq!(c.expires_at_ms(), Some(EXPIRES_SECS * 1000));
        // Nothing is outstanding any more.
        assert_eq!(failed(f.on_reply(ok("x"), now())), Failure::Abandoned);
    }

    /// The IMDSv2 token goes into a header: it must be 1 to 4096 visible
    /// ASCII characters, else the answer is malformed.
    #[test]
    fn an_unusable_imds_token_is_a_parse_failure() {
        let long = "t".repeat(4096);
        let mut f = Fetch::new(&imds());
        f.begin(now());
        let c = call(f.on_reply(ok(&long), now()));
        assert_eq!(c.get(IMDS_TOKEN_HEADER), Some(long.as_str()));
        for bad in [
            String::new(),
            " \n".into(),
            "t".repeat(4097),
            "a b".into(),
            "tok\u{e9}".into(),
        ] {
            let mut f = Fetch::new(&imds());
            f.begin(now());
            assert_eq!(
                failed(f.on_reply(ok(&bad), now())),
                Failure::Parse(ParseError::Malformed),
                "{bad:?}"
            );
        }
        let mut f = Fetch::new(&imds());
        f.begin(now());
        let r = Reply {
            status: 200,
            body: &[0xff, 0xfe],
        };
        assert_eq!(
            failed(f.on_reply(r, now())),
            Failure::Parse(ParseError::Malformed)
        );
        // A role name that cannot go into the path.
        let mut f = Fetch::new(&imds());
        f.begin(now());
        f.on_reply(ok("tok"), now());
        assert_eq!(
            failed(f.on_reply(ok("../admin"), now())),
            Failure::Parse(ParseError::BadRoleName)
        );
    }

    /// docs/credentials.md, container source: one GET of the URI's path, with
    /// `Authorization` from AWS_CONTAINER_AUTHORIZATION_TOKEN when set (else
    /// the cluster adds it).
    #[test]
    fn container_is_one_get_with_the_token() {
        let mut f = Fetch::new(&container(Some("Bearer pod")));
        assert_eq!(f.label(), "container");
        let c = call(f.begin(now()));
        assert_eq!(
            (c.cluster.as_str(), c.timeout_ms),
            ("presign_container", 700)
        );
        assert_eq!(
            headers(&c),
            [
                (":method", "GET"),
                (":path", "/v1/credentials"),
                (":authority", "169.254.170.23"),
                ("accept", "application/json"),
                ("authorization", "Bearer pod"),
            ]
        );
        let body = r#"{"AccessKeyId":"ASIACONT","SecretAccessKey":"cs","Token":"ct","Expiration":"2023-11-15T00:00:00Z"}"#;
        let creds = done(f.on_reply(ok(body), now()));
        assert_eq!(
            (creds.access_key_id(), creds.expires_at_ms()),
            ("ASIACONT", Some(EXPIRES_SECS * 1000))
        );
        let c = call(Fetch::new(&container(None)).begin(now()));
        assert_eq!(c.get("authorization"), None);
        assert_eq!(c.headers.len(), 4);
    }

    /// Percent-encodes as SigV4's canonical query does (unreserved kept).
    fn sigv4_encode(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn hex_sha256(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The Authorization header SigV4 prescribes for `call` (a GET of `/`
    /// with its query, signing host, x-amz-date and the session token if
    /// any, over an empty payload), computed here from the specification
    /// with only aws-sigv4's key derivation and HMAC.
    fn expected_authorization(call: &Call, id: &str, secret: &str, token: Option<&str>) -> String {
        let amz_date = call.get("x-amz-date").unwrap();
        let query = call.get(":path").unwrap().strip_prefix("/?").unwrap();
        let host = call.get(":authority").unwrap();
        let mut canonical_headers = format!("host:{host}\nx-amz-date:{amz_date}\n");
        let mut signed = String::from("host;x-amz-date");
        if let Some(t) = token {
            canonical_headers.push_str(&format!("x-amz-security-token:{t}\n"));
            signed.push_str(";x-amz-security-token");
        }
        let empty_payload = hex_sha256(b"");
        let canonical_request =
            format!("GET\n/\n{query}\n{canonical_headers}\n{signed}\n{empty_payload}");
        let scope = format!("{}/eu-west-1/sts/aws4_request", &amz_date[..8]);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex_sha256(canonical_request.as_bytes())
        );
        let key = generate_signing_key(secret, now(), "eu-west-1", "sts");
        let signature = calculate_signature(key, string_to_sign.as_bytes());
        format!(
            "AWS4-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
    }

    /// The STS query for `action`, built by hand in canonical (sorted) order.
    fn sts_query(action: &str, external_id: Option<&str>) -> String {
        let mut q = format!("/?Action={action}&DurationSeconds=3600");
        if let Some(x) = external_id {
            q.push_str(&format!("&ExternalId={}", sigv4_encode(x)));
        }
        q.push_str(&format!(
            "&RoleArn={}&RoleSessionName=envoy-presign&Version=2011-06-15",
            sigv4_encode(ROLE)
        ));
        q
    }

    /// docs/credentials.md, assume_role: a GET of `/` with the parameters in the query
    /// (canonical order, ExternalId included), `accept: application/json`,
    /// signed with SigV4 (service sts, the endpoint's region) by static base
    /// keys; the signature is the one the specification gives.
    #[test]
    fn assume_role_is_signed_by_static_keys() {
        let base = Credentials::new("AKIDBASE".into(), "base-secret".into(), None);
        let mut f = Fetch::new(&assume_role(BaseCredentials::Static(base)));
        assert_eq!(f.label(), "assume_role");
        let c = call(f.begin(now()));
        let path = sts_query("AssumeRole", Some("ext/42 x"));
        assert!(path.contains("&ExternalId=ext%2F42%20x&"), "{path}");
        assert_eq!((c.cluster.as_str(), c.timeout_ms), ("presign_sts", 900));
        assert_eq!(
            headers(&c)[..4],
            [
                (":method", "GET"),
                (":path", path.as_str()),
                (":authority", "sts.eu-west-1.amazonaws.com"),
                ("accept", "application/json"),
            ]
        );
        assert_eq!(c.get("x-amz-date"), Some("20231114T221320Z"));
        assert_eq!(c.get("x-amz-security-token"), None);
        assert_eq!(
            c.get("authorization"),
            Some(expected_authorization(&c, "AKIDBASE", "base-secret", None).as_str())
        );
        let creds = done(f.on_reply(ok(&sts_json("AssumeRole")), now()));
        assert_eq!(
            (
                creds.access_key_id(),
                creds.session_token(),
                creds.expires_at_ms()
            ),
            ("ASIAROLE", Some("role-token"), Some(EXPIRES_SECS * 1000))
        );
    }

    /// Temporary base keys sign with their session token: the
    /// `x-amz-security-token` header is sent and signed.
    #[test]
    fn assume_role_with_a_temporary_base_signs_the_token() {
        let base = Credentials::temporary(
            "ASIABASE".into(),
            "tmp-secret".into(),
            Some("tmp/token+=".into()),
            EXPIRES_SECS * 1000,
        );
        let mut f = Fetch::new(&assume_role(BaseCredentials::Static(base)));
        let c = call(f.begin(now()));
        assert_eq!(c.get("x-amz-security-token"), Some("tmp/token+="));
        assert_eq!(
            c.get("authorization"),
            Some(
                expected_authorization(&c, "ASIABASE", "tmp-secret", Some("tmp/token+=")).as_str()
            )
        );
        // Another secret gives another signature: the check is not vacuous.
        assert_ne!(
            c.get("authorization"),
            Some(expected_authorization(&c, "ASIABASE", "other", Some("tmp/token+=")).as_str())
        );
    }

    /// docs/credentials.md, assume_role with `base: imds`: the IMDS credentials are
    /// fetched first (its three calls), then the STS call is signed with
    /// them; a failing base fails the refresh.
    #[test]
    fn assume_role_with_a_fetched_base() {
        let source = assume_role(BaseCredentials::Fetched(Box::new(imds())));
        let mut f = Fetch::new(&source);
        assert_eq!(f.label(), "assume_role");
        let put = call(f.begin(now()));
        assert_eq!(put.get(":path"), Some("/latest/api/token"));
        let role = call(f.on_reply(ok("tok-1"), now()));
        assert_eq!(role.get(IMDS_TOKEN_HEADER), Some("tok-1"));
        call(f.on_reply(ok("presign-role"), now()));
        let c = call(f.on_reply(
            ok(&imds_json("ASIAIMDS", "imds-secret", "imds-token")),
            now(),
        ));
        assert_eq!(c.cluster, "presign_sts");
        assert_eq!(
            c.get(":path"),
            Some(sts_query("AssumeRole", Some("ext/42 x")).as_str())
        );
        assert_eq!(c.get("x-amz-security-token"), Some("imds-token"));
        assert_eq!(
            c.get("authorization"),
            Some(
                expected_authorization(&c, "ASIAIMDS", "imds-secret", Some("imds-token")).as_str()
            )
        );
        let creds = done(f.on_reply(ok(&sts_json("AssumeRole")), now()));
        assert_eq!(creds.access_key_id(), "ASIAROLE");
        // The base failing is the refresh failing.
        let mut f = Fetch::new(&source);
        f.begin(now());
        let r = Reply {
            status: 401,
            body: b"",
        };
        assert_eq!(failed(f.on_reply(r, now())), Failure::Status4xx);
        let mut f = Fetch::new(&source);
        imds_to_credentials_call(&mut f);
        assert_eq!(failed(f.on_reply(ok("{}"), now())).category(), "parse");
    }

    /// docs/credentials.md, web_identity: an unsigned GET with the parameters in
    /// canonical order, never an ExternalId; the cluster's internal listener
    /// appends the token.
    #[test]
    fn web_identity_is_an_unsigned_get() {
        let mut f = Fetch::new(&Source::WebIdentity(sts(Some("ignored"))));
        assert_eq!(f.label(), "web_identity");
        let c = call(f.begin(now()));
        let path = sts_query("AssumeRoleWithWebIdentity", None);
        assert_eq!(
            headers(&c),
            [
                (":method", "GET"),
                (":path", path.as_str()),
                (":authority", "sts.eu-west-1.amazonaws.com"),
                ("accept", "application/json"),
            ]
        );
        let creds = done(f.on_reply(ok(&sts_json("AssumeRoleWithWebIdentity")), now()));
        assert_eq!(creds.access_key_id(), "ASIAROLE");
        // The other action's document is not this one's answer.
        let mut f = Fetch::new(&Source::WebIdentity(sts(None)));
        f.begin(now());
        assert!(matches!(
            failed(f.on_reply(ok(&sts_json("AssumeRole")), now())),
            Failure::Parse(_)
        ));
    }

    /// docs/credentials.md, refresh metrics: a failure's category comes from the
    /// status (no answer: transport; 504: timeout; 4xx; any other non-2xx:
    /// http_5xx), at any step of any source.
    #[test]
    fn failures_are_classified_by_status() {
        let cases = [
            (0, Failure::Transport),
            (504, Failure::Timeout),
            (400, Failure::Status4xx),
            (403, Failure::Status4xx),
            (499, Failure::Status4xx),
            (500, Failure::Status5xx),
            (503, Failure::Status5xx),
            (300, Failure::Status5xx),
            (199, Failure::Status5xx),
        ];
        let sources = [
            imds(),
            container(None),
            Source::WebIdentity(sts(None)),
            assume_role(BaseCredentials::Static(Credentials::new(
                "A".into(),
                "s".into(),
                None,
            ))),
        ];
        for (status, want) in cases {
            for source in &sources {
                let mut f = Fetch::new(source);
                f.begin(now());
                let r = Reply {
                    status,
                    body: b"{}",
                };
                assert_eq!(failed(f.on_reply(r, now())), want, "{status} {source:?}");
            }
            // The IMDS's later steps too.
            let mut f = Fetch::new(&imds());
            imds_to_credentials_call(&mut f);
            let r = Reply { status, body: b"" };
            assert_eq!(failed(f.on_reply(r, now())), want, "{status}, third call");
        }
        // Any 2xx is an answer.
        let mut f = Fetch::new(&container(None));
        f.begin(now());
        let body =
            r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2023-11-15T00:00:00Z"}"#;
        let r = Reply {
            status: 299,
            body: body.as_bytes(),
        };
        done(f.on_reply(r, now()));
    }

    /// A 2xx the parser refuses is a parse failure, never credentials.
    #[test]
    fn unusable_answers_are_parse_failures() {
        for source in [imds(), container(None), Source::WebIdentity(sts(None))] {
            let mut f = Fetch::new(&source);
            if matches!(source, Source::Imds(_)) {
                imds_to_credentials_call(&mut f);
            } else {
                f.begin(now());
            }
            let got = failed(f.on_reply(ok("<html>not it</html>"), now()));
            assert!(matches!(got, Failure::Parse(_)), "{source:?}: {got:?}");
            assert_eq!(got.category(), "parse");
        }
    }

    /// docs/credentials.md, refresh: credentials that have already expired are never
    /// stored (an `Expiration` at or before now).
    #[test]
    fn expired_credentials_are_a_failure() {
        let body =
            r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2023-11-15T00:00:00Z"}"#;
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let expiry_ms = EXPIRES_SECS * 1000;
        for (now_ms, expired) in [
            (expiry_ms - 1, false),
            (expiry_ms, true),
            (expiry_ms + 1, true),
        ] {
            let mut f = Fetch::new(&container(None));
            f.begin(at(now_ms));
            let step = f.on_reply(ok(body), at(now_ms));
            if expired {
                assert_eq!(failed(step), Failure::Expired, "{now_ms}");
            } else {
                assert_eq!(done(step).expires_at_ms(), Some(expiry_ms));
            }
        }
        let mut f = Fetch::new(&imds());
        imds_to_credentials_call(&mut f);
        let late = at((EXPIRES_SECS + 60) * 1000);
        assert_eq!(
            failed(f.on_reply(ok(&imds_json("A", "s", "t")), late)),
            Failure::Expired
        );
    }

    /// An answer with no call outstanding (never begun) means nothing.
    #[test]
    fn an_answer_without_a_call_is_ignored() {
        let mut f = Fetch::new(&container(None));
        assert_eq!(failed(f.on_reply(ok("{}"), now())), Failure::Abandoned);
    }

    /// docs/credentials.md, refresh metrics: the `result` label and the
    /// `last_failure` gauge's code of each failure (0 is success).
    #[test]
    fn failure_categories_and_codes() {
        let all = [
            (Failure::Dispatch, "dispatch_error", 1),
            (Failure::Transport, "transport", 2),
            (Failure::Timeout, "timeout", 3),
            (Failure::Status4xx, "http_4xx", 4),
            (Failure::Status5xx, "http_5xx", 5),
            (Failure::Parse(ParseError::Malformed), "parse", 6),
            (Failure::Expired, "expired", 7),
            (Failure::Abandoned, "abandoned", 8),
        ];
        for (f, category, code) in all {
            assert_eq!((f.category(), f.code()), (category, code), "{f:?}");
            assert_eq!(REFRESH_RESULTS[usize::from(code)], category);
        }
        assert_eq!(REFRESH_RESULTS[0], "success");
    }

    /// docs/operations.md, what is never exposed: a call's Debug (logged on a failed
    /// dispatch) shows where it goes, never the signature, session token,
    /// IMDS token or container authorization.
    #[test]
    fn debug_of_a_call_redacts_secrets() {
        let base = Credentials::temporary(
            "ASIABASE".into(),
            "tmp-secret".into(),
            Some("SESSION-TOKEN-1".into()),
            EXPIRES_SECS * 1000,
        );
        let signed = call(Fetch::new(&assume_role(BaseCredentials::Static(base))).begin(now()));
        let sig = signed.get("authorization").unwrap().to_string();
        let mut f = Fetch::new(&imds());
        f.begin(now());
        let role = call(f.on_reply(ok("IMDS-TOKEN-1"), now()));
        let cont = call(Fetch::new(&container(Some("Bearer POD-TOKEN-1"))).begin(now()));
        let shown = format!("{signed:?} {role:?} {cont:?}");
        for secret in [
            sig.as_str(),
            "SESSION-TOKEN-1",
            "IMDS-TOKEN-1",
            "POD-TOKEN-1",
            "tmp-secret",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for shown_part in [
            "presign_sts",
            "sts.eu-west-1.amazonaws.com",
            "/latest/meta-data/iam/security-credentials/",
            "x-amz-date",
            "20231114T221320Z",
            "<redacted>",
            "timeout_ms: 900",
        ] {
            assert!(shown.contains(shown_part), "{shown_part} not in {shown}");
        }
    }

    /// docs/credentials.md, refresh metrics: Envoy's own 503 for an endpoint it could
    /// not reach (connection refused or reset, no healthy host) is a
    /// transport failure; the endpoint's own 503 stays http_5xx.
    #[test]
    fn envoys_own_503_for_an_unreachable_endpoint_is_transport() {
        for (body, want) in [
            (
                &b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"[..],
                Failure::Transport,
            ),
            (b"no healthy upstream", Failure::Transport),
            (b"Service Unavailable", Failure::Status5xx),
            (b"", Failure::Status5xx),
        ] {
            let mut f = Fetch::new(&imds());
            f.begin(now());
            let r = Reply { status: 503, body };
            assert_eq!(failed(f.on_reply(r, now())), want, "{body:?}");
        }
        // Only on a 503: the same text in a 500 is the endpoint's answer.
        let mut f = Fetch::new(&imds());
        f.begin(now());
        let r = Reply {
            status: 500,
            body: b"no healthy upstream",
        };
        assert_eq!(failed(f.on_reply(r, now())), Failure::Status5xx);
    }

    /// Debug output never shows a provider's answer or the IMDSv2 token.
    #[test]
    fn debug_shows_neither_the_answer_nor_the_imds_token() {
        let body = br#"{"SecretAccessKey":"wJalr-SECRET"}"#;
        let r = Reply { status: 200, body };
        assert_eq!(
            format!("{r:?}"),
            format!("Reply(200, {} bytes)", body.len())
        );
        let mut f = Fetch::new(&imds());
        f.begin(now());
        f.on_reply(ok("imds-token-SECRET"), now());
        let shown = format!("{f:?}");
        assert!(shown.contains("ImdsRole { token: <redacted> }"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
