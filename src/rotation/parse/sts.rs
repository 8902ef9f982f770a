//! STS `AssumeRole` and `AssumeRoleWithWebIdentity` answers, JSON or XML:
//! the JSON read as the other JSON answers are, the XML walked element by
//! element over the scanner of `xml`, with every field required once.

use serde_json::Value;

use crate::rotation::parse::bounds::{
    check_size, checked, within_lifetime, Field, ParseError, ACCESS_KEY_ID, SECRET_ACCESS_KEY,
    SESSION_TOKEN,
};
use crate::rotation::parse::json::{field, json_expiration, json_object, required_str};
use crate::rotation::parse::timestamp::parse_rfc3339_ms;
use crate::rotation::parse::xml::{decode_xml_text, Token, XmlScanner};
use crate::sigv4::credentials::Credentials;

/// Deepest XML element nesting accepted (STS documents nest four levels).
const MAX_XML_DEPTH: usize = 32;

/// Which STS action answered (their documents differ only by the element prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsAction {
    /// `AssumeRole` (a role assumed with other credentials).
    AssumeRole,
    /// `AssumeRoleWithWebIdentity` (an OIDC token, as on EKS with IRSA).
    AssumeRoleWithWebIdentity,
}

impl StsAction {
    /// The action's name as STS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRole",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
        }
    }

    /// The root element of its answer (`<Action>Response`).
    pub(super) fn response_element(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRoleResponse",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentityResponse",
        }
    }

    /// The element holding its result (`<Action>Result`).
    pub(super) fn result_element(self) -> &'static str {
        match self {
            Self::AssumeRole => "AssumeRoleResult",
            Self::AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentityResult",
        }
    }
}

/// STS response, JSON or XML (decided by the first non-whitespace byte: `{`
/// JSON, `<` XML).
///
/// JSON (STS with `Accept: application/json`):
/// `{"<Action>Response":{"<Action>Result":{"Credentials":{"AccessKeyId",
/// "SecretAccessKey","SessionToken","Expiration"}}}}`, Expiration an
/// epoch-seconds number (or an RFC 3339 string). `{"Error":..}` or
/// `{"ErrorResponse":..}` is `ProviderError`.
///
/// XML: `<Action>Response` / `<Action>Result` / `Credentials` with the four
/// fields as child elements, Expiration RFC 3339; `<ErrorResponse>` is
/// `ProviderError`. A response for the other action is `Malformed`.
///
/// SessionToken and Expiration are required. `now_ms` (Unix ms) is the
/// origin of the lifetime bound.
pub fn parse_sts_credentials(
    body: &[u8],
    action: StsAction,
    now_ms: u64,
) -> Result<Credentials, ParseError> {
    check_size(body)?;
    let text = std::str::from_utf8(body).map_err(|_| ParseError::Malformed)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let c = match text.trim_start().as_bytes().first() {
        Some(b'{') => sts_json(text.as_bytes(), action)?,
        Some(b'<') => sts_xml(text, action)?,
        _ => return Err(ParseError::Malformed),
    };
    within_lifetime(c.expires_at_ms().unwrap_or(0), now_ms)?;
    Ok(c)
}

fn sts_json(body: &[u8], action: StsAction) -> Result<Credentials, ParseError> {
    let doc = json_object(body)?;
    if field(&doc, "Error").is_some() || field(&doc, "ErrorResponse").is_some() {
        return Err(ParseError::ProviderError);
    }
    let result = field(&doc, action.response_element())
        .and_then(Value::as_object)
        .and_then(|r| field(r, action.result_element()))
        .and_then(Value::as_object)
        .ok_or(ParseError::Malformed)?;
    let creds = match field(result, "Credentials") {
        None | Some(Value::Null) => return Err(ParseError::Missing("Credentials")),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(ParseError::Malformed),
    };
    let akid = required_str(creds, ACCESS_KEY_ID)?;
    let secret = required_str(creds, SECRET_ACCESS_KEY)?;
    let token = required_str(creds, SESSION_TOKEN)?;
    let expires = json_expiration(creds)?;
    Ok(Credentials::temporary(akid, secret, Some(token), expires))
}

/// The four values of an STS `Credentials` element, in field order.
const STS_FIELDS: [&str; 4] = [
    "AccessKeyId",
    "SecretAccessKey",
    "SessionToken",
    "Expiration",
];

/// What an open XML element is, by its place in the document.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Response,
    Result,
    Credentials,
    /// One of STS_FIELDS, by position.
    Field(usize),
    Other,
}

fn sts_xml(text: &str, action: StsAction) -> Result<Credentials, ParseError> {
    let mut xml = XmlScanner { rest: text };
    // Open elements: their full name (to match the end tag) and role.
    let mut stack: Vec<(&str, Role)> = Vec::new();
    let mut seen_root = false;
    let mut seen_result = false;
    let mut seen_credentials = false;
    let mut values: [Option<String>; 4] = Default::default();

    while let Some(token) = xml.next_token()? {
        match token {
            Token::Start { name, empty } => {
                let local = name.rsplit(':').next().unwrap_or(name);
                let parent = stack.last().map(|&(_, role)| role);
                let role = match parent {
                    None => {
                        if seen_root {
                            return Err(ParseError::Malformed);
                        }
                        seen_root = true;
                        if local == "ErrorResponse" {
                            return Err(ParseError::ProviderError);
                        }
                        if local != action.response_element() {
                            return Err(ParseError::Malformed);
                        }
                        Role::Response
                    }
                    Some(Role::Response) if local == action.result_element() => {
                        if std::mem::replace(&mut seen_result, true) {
                            return Err(ParseError::Malformed);
                        }
                        Role::Result
                    }
                    Some(Role::Result) if local == "Credentials" => {
                        if std::mem::replace(&mut seen_credentials, true) {
                            return Err(ParseError::Malformed);
                        }
                        Role::Credentials
                    }
                    Some(Role::Credentials) => match STS_FIELDS.iter().position(|f| *f == local) {
                        Some(i) => {
                            let slot = values.get_mut(i).ok_or(ParseError::Malformed)?;
                            if slot.is_some() {
                                return Err(ParseError::Malformed);
                            }
                            *slot = Some(String::new());
                            Role::Field(i)
                        }
                        None => Role::Other,
                    },
                    // A value is text only.
                    Some(Role::Field(_)) => return Err(ParseError::Malformed),
                    Some(_) => Role::Other,
                };
                if !empty {
                    if stack.len() >= MAX_XML_DEPTH {
                        return Err(ParseError::Malformed);
                    }
                    stack.push((name, role));
                }
            }
            Token::End(name) => match stack.pop() {
                Some((open, _)) if open == name => {}
                _ => return Err(ParseError::Malformed),
            },
            Token::Text(raw) => match stack.last() {
                Some(&(_, Role::Field(i))) => {
                    let slot = values.get_mut(i).and_then(Option::as_mut);
                    decode_xml_text(slot.ok_or(ParseError::Malformed)?, raw)?;
                }
                Some(_) => {}
                None if raw.trim().is_empty() => {}
                None => return Err(ParseError::Malformed),
            },
            Token::CData(raw) => match stack.last() {
                Some(&(_, Role::Field(i))) => {
                    let slot = values.get_mut(i).and_then(Option::as_mut);
                    slot.ok_or(ParseError::Malformed)?.push_str(raw);
                }
                Some(_) => {}
                None => return Err(ParseError::Malformed),
            },
        }
    }
    if !seen_root || !stack.is_empty() || !seen_result {
        return Err(ParseError::Malformed);
    }
    if !seen_credentials {
        return Err(ParseError::Missing("Credentials"));
    }
    let [akid, secret, token, expiration] = values;
    // A value, trimmed (STS wraps none, but the samples indent them).
    let text = |v: &Option<String>, name: &'static str| {
        let v = v.as_deref().unwrap_or_default().trim();
        if v.is_empty() {
            Err(ParseError::Missing(name))
        } else {
            Ok(v.to_owned())
        }
    };
    let take = |v: &Option<String>, f: Field| {
        let v = text(v, f.name)?;
        checked(f, &v)?;
        Ok(v)
    };
    let akid = take(&akid, ACCESS_KEY_ID)?;
    let secret = take(&secret, SECRET_ACCESS_KEY)?;
    let token = take(&token, SESSION_TOKEN)?;
    let expiration = text(&expiration, "Expiration")?;
    let expires = parse_rfc3339_ms(&expiration).ok_or(ParseError::BadExpiration)?;
    Ok(Credentials::temporary(akid, secret, Some(token), expires))
}
