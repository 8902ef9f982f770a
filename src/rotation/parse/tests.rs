/// The time the tests read answers at (Nov 2023): the samples' expirations
/// are before it, well inside the lifetime bound.
const NOW_MS: u64 = 1_700_000_000_000;
use super::*;
use crate::sigv4::credentials::Credentials;
use serde_json::{json, Value};

use StsAction::{AssumeRole, AssumeRoleWithWebIdentity};

// Distinctive values: no error or Debug output may ever contain them.
const SECRET: &str = "SECRETzq7Jx9Vw2Kp4Lm8Nn1Rr5Tt0Yy3";
const TOKEN: &str = "TOKENqH6bF2dG9sA4kJ7lP0oI3uY8tR5eW1";

/// The IMDS sample of the AWS Rust SDK (`aws-config` `json_credentials.rs`).
const IMDS_SAMPLE: &str = r#"{
  "Code" : "Success",
  "LastUpdated" : "2021-09-17T20:57:08Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIARTEST",
  "SecretAccessKey" : "xjtest",
  "Token" : "IQote///test",
  "Expiration" : "2021-09-18T03:31:56Z"
}"#;

/// The ECS task role sample of the ECS developer guide (values filled in).
const ECS_SAMPLE: &str = r#"{
    "AccessKeyId": "ASIAECSEXAMPLE",
    "Expiration": "2021-09-18T03:31:56Z",
    "RoleArn": "arn:aws:iam::123456789012:role/task",
    "SecretAccessKey": "ecs-secret",
    "Token": "ecs-token"
}"#;

/// The AssumeRole XML sample of the STS API reference (its session token is
/// wrapped over lines there for display; STS sends it on one line).
const ASSUME_ROLE_XML: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult>
<SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>
       AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==
      </SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>8</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

/// The AssumeRoleWithWebIdentity XML sample of the STS API reference.
const WEB_IDENTITY_XML: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <SourceIdentity>SourceIdentityValue</SourceIdentity>
    <Provider>www.amazon.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

/// The STS XML error document.
const STS_ERROR_XML: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::123456789012:user/x is not authorized to perform: sts:AssumeRole</Message>
  </Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
</ErrorResponse>"#;

/// STS JSON as Envoy's web identity provider reads it (Envoy's own test document).
const WEB_IDENTITY_JSON: &str = r#"{
  "AssumeRoleWithWebIdentityResponse": {
    "AssumeRoleWithWebIdentityResult": {
      "Credentials": {
        "AccessKeyId": "akid",
        "SecretAccessKey": "secret",
        "SessionToken": "token",
        "Expiration": 1.514869445E9
      }
    }
  }
}"#;

fn imds(akid: &str, secret: &str, token: &str, exp: &str) -> String {
    format!(
        r#"{{"Code":"Success","LastUpdated":"2021-09-17T20:57:08Z","Type":"AWS-HMAC",
                "AccessKeyId":"{akid}","SecretAccessKey":"{secret}","Token":"{token}","Expiration":"{exp}"}}"#
    )
}

fn sts_xml_doc(action: StsAction, fields: &str) -> String {
    let a = action.as_str();
    format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{a}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <{a}Result><Credentials>{fields}</Credentials></{a}Result>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{a}Response>"
        )
}

fn sts_json_doc(action: StsAction, creds: Value) -> String {
    let a = action.as_str();
    json!({ format!("{a}Response"): { format!("{a}Result"): { "Credentials": creds } } })
        .to_string()
}

fn parts(c: &Credentials) -> (&str, &str, Option<&str>, Option<u64>) {
    (
        c.access_key_id(),
        c.secret_access_key(),
        c.session_token(),
        c.expires_at_ms(),
    )
}

// -- RFC 3339 -----------------------------------------------------------

#[test]
fn rfc3339_matches_known_epoch_values() {
    // Literals from python3 datetime.fromisoformat(...).timestamp().
    for (s, ms) in [
        ("1970-01-01T00:00:00Z", 0),
        ("2021-09-18T03:31:56Z", 1_631_935_916_000),
        ("2021-09-18T03:31:56.359+00:00", 1_631_935_916_359),
        ("2011-07-15T23:28:33.359Z", 1_310_772_513_359),
        ("2019-11-09T13:34:41Z", 1_573_306_481_000),
        ("2014-10-24T23:00:23Z", 1_414_191_623_000),
        ("2019-12-31T23:59:59Z", 1_577_836_799_000),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
        ("2024-02-29T12:00:00Z", 1_709_208_000_000),
        ("2024-02-29T12:00:00+02:00", 1_709_200_800_000),
        ("2024-02-29T12:00:00-05:30", 1_709_227_800_000),
        ("2020-01-01T00:30:00+01:00", 1_577_835_000_000),
        ("1970-01-01T05:30:00+05:30", 0),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ] {
        assert_eq!(parse_rfc3339_ms(s), Some(ms), "{s}");
    }
}

#[test]
fn rfc3339_fractions_case_and_minus_zero() {
    assert_eq!(
        parse_rfc3339_ms("2021-09-18t03:31:56z"),
        Some(1_631_935_916_000)
    );
    assert_eq!(
        parse_rfc3339_ms("2021-09-18T03:31:56.3Z"),
        Some(1_631_935_916_300)
    );
    assert_eq!(
        parse_rfc3339_ms("2021-09-18T03:31:56.35Z"),
        Some(1_631_935_916_350)
    );
    // Digits past the millisecond are dropped, not rounded.
    assert_eq!(
        parse_rfc3339_ms("2021-09-18T03:31:56.359999999999Z"),
        Some(1_631_935_916_359)
    );
    assert_eq!(
        parse_rfc3339_ms("2021-09-18T03:31:56-00:00"),
        Some(1_631_935_916_000)
    );
}

/// RFC 3339 offsets run to ±23:59 (the widest an `Expiration` may carry).
#[test]
fn rfc3339_offsets_up_to_23_59() {
    // 2021-01-01T00:00:00Z is 1_609_459_200_000.
    assert_eq!(
        parse_rfc3339_ms("2021-01-01T23:59:00+23:59"),
        Some(1_609_459_200_000)
    );
    assert_eq!(
        parse_rfc3339_ms("2021-01-01T00:00:00-23:59"),
        Some(1_609_459_200_000 + 86_340_000)
    );
    assert_eq!(
        parse_rfc3339_ms("2021-01-01T00:59:00+00:59"),
        Some(1_609_459_200_000)
    );
}

#[test]
fn rfc3339_refuses_invalid_dates_and_forms() {
    for s in [
        "",
        "2023-02-29T00:00:00Z", // not a leap year
        "1900-02-29T00:00:00Z", // divisible by 100
        "2100-02-29T00:00:00Z", // divisible by 100, not by 400
        "2021-04-31T00:00:00Z",
        "2021-13-01T00:00:00Z",
        "2021-00-01T00:00:00Z",
        "2021-01-00T00:00:00Z",
        "2021-01-32T00:00:00Z",
        "2021-01-01T24:00:00Z",
        "2021-01-01T00:60:00Z",
        "2021-01-01T00:00:60Z", // no leap second
        "2021-01-01T00:00:00",  // no offset
        "2021-01-01 00:00:00Z",
        "2021-01-01T00:00:00.Z",
        "2021-01-01T00:00:00+0100",
        "2021-01-01T00:00:00+24:00",
        "2021-01-01T00:00:00+01:60",
        "2021-01-01T00:00:00Zjunk",
        "2021-1-01T00:00:00Z",
        "+2021-01-01T00:00:00Z",
        "21-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00", // 1969 in UTC
        "9999-12-31T23:59:59-00:01", // year 10000 in UTC
        "10000-01-01T00:00:00Z",
        "２０２１-01-01T00:00:00Z",
        "2021-01-01T00:00:00.٣Z",
    ] {
        assert_eq!(parse_rfc3339_ms(s), None, "{s}");
    }
    // Every prefix of a valid timestamp is refused, and nothing panics.
    let full = "2024-02-29T12:00:00.123+02:00";
    for end in 0..full.len() {
        assert_eq!(parse_rfc3339_ms(&full[..end]), None, "{}", &full[..end]);
    }
    assert!(parse_rfc3339_ms(full).is_some());
}

#[test]
fn expiration_numbers_are_epoch_seconds() {
    assert_eq!(
        parse_expiration(&json!(1_514_862_300)),
        Some(1_514_862_300_000)
    );
    assert_eq!(
        parse_expiration(&json!(1.514869445E9)),
        Some(1_514_869_445_000)
    );
    assert_eq!(
        parse_expiration(&json!(1_631_935_916.359)),
        Some(1_631_935_916_359)
    );
    assert_eq!(parse_expiration(&json!(0)), Some(0));
    assert_eq!(
        parse_expiration(&json!(253_402_300_799_u64)),
        Some(253_402_300_799_000)
    );
    assert_eq!(
        parse_expiration(&json!("2021-09-18T03:31:56Z")),
        Some(1_631_935_916_000)
    );
    for v in [
        json!(-1),
        json!(-0.5),
        json!(253_402_300_800_u64), // year 10000
        json!(u64::MAX),
        json!(1e300),
        json!(f64::MAX),
        json!("1514862300"),
        json!(""),
        json!(null),
        json!(true),
        json!([1_514_862_300]),
        json!({"s": 1}),
    ] {
        assert_eq!(parse_expiration(&v), None, "{v}");
    }
    // serde_json turns NaN into null; a huge integer literal is read as a float.
    assert_eq!(parse_expiration(&json!(f64::NAN)), None);
    let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    assert_eq!(parse_expiration(&big), None);
}

// -- IMDS role ----------------------------------------------------------

#[test]
fn imds_role_is_the_first_non_empty_line() {
    assert_eq!(parse_imds_role(b"my-role").unwrap(), "my-role");
    assert_eq!(
        parse_imds_role(b"\r\n  \nmy-role \r\nother\n").unwrap(),
        "my-role"
    );
    let all = "Aa0+=,.@_-".repeat(7);
    assert_eq!(parse_imds_role(&all.as_bytes()[..64]).unwrap(), &all[..64]);
}

#[test]
fn imds_role_refuses_what_would_not_fit_a_path() {
    assert_eq!(parse_imds_role(b""), Err(ParseError::Missing("role name")));
    assert_eq!(
        parse_imds_role(b" \n\r\n\t"),
        Err(ParseError::Missing("role name"))
    );
    for bad in [
        "a/b", "../x", "a b", "a%2F", "rôle", "a?b", "a#b", "a\u{0}b", "role\tx",
    ] {
        assert_eq!(
            parse_imds_role(bad.as_bytes()),
            Err(ParseError::BadRoleName),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_imds_role("r".repeat(65).as_bytes()),
        Err(ParseError::BadRoleName)
    );
    assert_eq!(parse_imds_role(b"role\xff"), Err(ParseError::Malformed));
    assert_eq!(
        parse_imds_role(&vec![b'a'; MAX_BODY_BYTES + 1]),
        Err(ParseError::TooLarge)
    );
}

// -- IMDS credentials ---------------------------------------------------

#[test]
fn imds_sample_of_the_sdk_parses() {
    let c = parse_imds_credentials(IMDS_SAMPLE.as_bytes(), NOW_MS).unwrap();
    assert_eq!(
        parts(&c),
        (
            "ASIARTEST",
            "xjtest",
            Some("IQote///test"),
            Some(1_631_935_916_000)
        )
    );
}

#[test]
fn imds_keys_are_case_insensitive_and_code_is_optional() {
    let doc = r#"{"accesskeyid":"A","SECRETACCESSKEY":"s","token":"t","expiration":"2021-09-18T03:31:56Z"}"#;
    let c = parse_imds_credentials(doc.as_bytes(), NOW_MS).unwrap();
    assert_eq!(parts(&c), ("A", "s", Some("t"), Some(1_631_935_916_000)));
    // An exact key wins over one differing in case.
    let doc = r#"{"ACCESSKEYID":"upper","AccessKeyId":"exact","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"}"#;
    assert_eq!(
        parse_imds_credentials(doc.as_bytes(), NOW_MS)
            .unwrap()
            .access_key_id(),
        "exact"
    );
}

#[test]
fn imds_names_every_missing_field() {
    let full = json!({"Code":"Success","AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"});
    for name in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
        for missing in [None, Some(json!("")), Some(json!(null))] {
            let mut doc = full.clone();
            match &missing {
                None => {
                    doc.as_object_mut().unwrap().remove(name);
                }
                Some(v) => doc[name] = v.clone(),
            }
            let body = doc.to_string();
            assert_eq!(
                parse_imds_credentials(body.as_bytes(), NOW_MS),
                Err(ParseError::Missing(name)),
                "{body}"
            );
        }
    }
}

#[test]
fn imds_error_documents_and_bad_shapes() {
    for doc in [
        r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"denied","LastUpdated":"2021-09-17T20:57:08Z"}"#,
        r#"{"Code":"Failure","AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"}"#,
        r#"{"code":"success","AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"}"#,
        r#"{"Code":1}"#,
        r#"{"message":"no role"}"#,
    ] {
        assert_eq!(
            parse_imds_credentials(doc.as_bytes(), NOW_MS),
            Err(ParseError::ProviderError),
            "{doc}"
        );
    }
    for doc in [
        "",
        "null",
        "[]",
        "\"x\"",
        "<html>404</html>",
        "{\"AccessKeyId\":\"A\"",
        r#"{"AccessKeyId":1,"SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"}"#,
    ] {
        assert_eq!(
            parse_imds_credentials(doc.as_bytes(), NOW_MS),
            Err(ParseError::Malformed),
            "{doc}"
        );
    }
    let doc = r#"{"AccessKeyId":"A\nB","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"}"#;
    assert_eq!(
        parse_imds_credentials(doc.as_bytes(), NOW_MS),
        Err(ParseError::BadField("AccessKeyId"))
    );
    let bad_exp = imds("A", "s", "t", "2023-02-29T00:00:00Z");
    assert_eq!(
        parse_imds_credentials(bad_exp.as_bytes(), NOW_MS),
        Err(ParseError::BadExpiration)
    );
}

// -- Container endpoint -------------------------------------------------

#[test]
fn ecs_sample_parses() {
    let c = parse_container_credentials(ECS_SAMPLE.as_bytes(), NOW_MS).unwrap();
    assert_eq!(
        parts(&c),
        (
            "ASIAECSEXAMPLE",
            "ecs-secret",
            Some("ecs-token"),
            Some(1_631_935_916_000)
        )
    );
    // The IMDS document (with Code) is accepted too.
    assert!(parse_container_credentials(IMDS_SAMPLE.as_bytes(), NOW_MS).is_ok());
}

#[test]
fn container_token_is_optional() {
    for token in [None, Some(json!("")), Some(json!(null))] {
        let mut doc =
            json!({"accessKeyId":"A","secretAccessKey":"s","expiration":"2021-09-18T03:31:56Z"});
        if let Some(t) = token {
            doc["Token"] = t;
        }
        let c = parse_container_credentials(doc.to_string().as_bytes(), NOW_MS).unwrap();
        assert_eq!(parts(&c), ("A", "s", None, Some(1_631_935_916_000)));
    }
}

#[test]
fn container_names_missing_fields_and_refuses_errors() {
    let full = json!({"AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2021-09-18T03:31:56Z"});
    for name in ["AccessKeyId", "SecretAccessKey", "Expiration"] {
        let mut doc = full.clone();
        doc.as_object_mut().unwrap().remove(name);
        assert_eq!(
            parse_container_credentials(doc.to_string().as_bytes(), NOW_MS),
            Err(ParseError::Missing(name))
        );
    }
    for doc in [
        r#"{"code":"AccessDenied","message":"Unable to fetch credentials"}"#,
        r#"{"Code":"InvalidToken","Message":"bad token"}"#,
        r#"{"message":"not found"}"#,
    ] {
        assert_eq!(
            parse_container_credentials(doc.as_bytes(), NOW_MS),
            Err(ParseError::ProviderError),
            "{doc}"
        );
    }
    let mut doc = full.clone();
    doc["Token"] = json!(["t"]);
    assert_eq!(
        parse_container_credentials(doc.to_string().as_bytes(), NOW_MS),
        Err(ParseError::Malformed)
    );
    let mut doc = full;
    doc["Expiration"] = json!("tomorrow");
    assert_eq!(
        parse_container_credentials(doc.to_string().as_bytes(), NOW_MS),
        Err(ParseError::BadExpiration)
    );
}

// -- STS ----------------------------------------------------------------

#[test]
fn sts_xml_samples_of_the_api_reference_parse() {
    let c = parse_sts_credentials(ASSUME_ROLE_XML.as_bytes(), AssumeRole, NOW_MS).unwrap();
    let (akid, secret, token, exp) = parts(&c);
    assert_eq!(
        (akid, secret, exp),
        (
            "ASIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            Some(1_573_306_481_000)
        )
    );
    let token = token.unwrap();
    assert!(
        token.starts_with("AQoDYXdzEPT//") && token.ends_with("BA=="),
        "{token}"
    );

    let c = parse_sts_credentials(
        WEB_IDENTITY_XML.as_bytes(),
        AssumeRoleWithWebIdentity,
        NOW_MS,
    )
    .unwrap();
    assert_eq!(
        parts(&c),
        (
            "ASgeIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE"),
            Some(1_414_191_623_000)
        )
    );
}

#[test]
fn sts_xml_for_the_other_action_is_malformed() {
    assert_eq!(
        parse_sts_credentials(
            ASSUME_ROLE_XML.as_bytes(),
            AssumeRoleWithWebIdentity,
            NOW_MS
        ),
        Err(ParseError::Malformed)
    );
    assert_eq!(
        parse_sts_credentials(WEB_IDENTITY_XML.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::Malformed)
    );
    // Credentials outside <Action>Result do not count.
    let doc = "<AssumeRoleResponse><Credentials><AccessKeyId>A</AccessKeyId></Credentials>\
                   <AssumeRoleResult></AssumeRoleResult></AssumeRoleResponse>";
    assert_eq!(
        parse_sts_credentials(doc.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::Missing("Credentials"))
    );
    let doc = "<AssumeRoleResponse><Other><AssumeRoleResult><Credentials/></AssumeRoleResult></Other></AssumeRoleResponse>";
    assert_eq!(
        parse_sts_credentials(doc.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::Malformed)
    );
}

#[test]
fn sts_xml_declaration_attributes_comments_entities_and_cdata() {
    let fields = "<AccessKeyId a=\"x>y\" b='1'>ASIA</AccessKeyId>\
            <!-- a comment with <tags> -->\
            <SecretAccessKey>a&amp;b&lt;c&gt;d&quot;e&apos;f&#65;&#x42;</SecretAccessKey>\
            <SessionToken><![CDATA[tok&amp;]]></SessionToken>\
            <Expiration>\n  2011-07-15T23:28:33.359Z\n</Expiration>";
    let doc = sts_xml_doc(AssumeRole, fields);
    let c = parse_sts_credentials(doc.as_bytes(), AssumeRole, NOW_MS).unwrap();
    assert_eq!(
        parts(&c),
        (
            "ASIA",
            "a&b<c>d\"e'fAB",
            Some("tok&amp;"),
            Some(1_310_772_513_359)
        )
    );
    // A namespace prefix and a byte-order mark are accepted.
    let doc =
        "\u{feff}<sts:AssumeRoleResponse xmlns:sts=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
            <sts:AssumeRoleResult><sts:Credentials><sts:AccessKeyId>A</sts:AccessKeyId>\
            <sts:SecretAccessKey>s</sts:SecretAccessKey><sts:SessionToken>t</sts:SessionToken>\
            <sts:Expiration>2011-07-15T23:28:33.359Z</sts:Expiration></sts:Credentials>\
            </sts:AssumeRoleResult></sts:AssumeRoleResponse>";
    let c = parse_sts_credentials(doc.as_bytes(), AssumeRole, NOW_MS).unwrap();
    assert_eq!(parts(&c), ("A", "s", Some("t"), Some(1_310_772_513_359)));
}

#[test]
fn sts_xml_names_every_missing_field() {
    let all = [
        ("AccessKeyId", "A"),
        ("SecretAccessKey", "s"),
        ("SessionToken", "t"),
        ("Expiration", "2011-07-15T23:28:33.359Z"),
    ];
    for action in [AssumeRole, AssumeRoleWithWebIdentity] {
        for (missing, _) in all {
            for form in ["absent", "empty", "selfclosed", "blank"] {
                let fields: String = all
                    .iter()
                    .map(|&(n, v)| match (n == missing, form) {
                        (false, _) => format!("<{n}>{v}</{n}>"),
                        (true, "absent") => String::new(),
                        (true, "empty") => format!("<{n}></{n}>"),
                        (true, "selfclosed") => format!("<{n}/>"),
                        (true, _) => format!("<{n}> \n </{n}>"),
                    })
                    .collect();
                let doc = sts_xml_doc(action, &fields);
                assert_eq!(
                    parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
                    Err(ParseError::Missing(missing)),
                    "{doc}"
                );
            }
        }
        let a = action.as_str();
        let doc = format!("<{a}Response><{a}Result><AssumedRoleUser/></{a}Result></{a}Response>");
        assert_eq!(
            parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
            Err(ParseError::Missing("Credentials"))
        );
    }
}

#[test]
fn sts_xml_error_document_is_a_provider_error() {
    for action in [AssumeRole, AssumeRoleWithWebIdentity] {
        assert_eq!(
            parse_sts_credentials(STS_ERROR_XML.as_bytes(), action, NOW_MS),
            Err(ParseError::ProviderError)
        );
        let with_decl = format!("<?xml version=\"1.0\"?>\n{STS_ERROR_XML}");
        assert_eq!(
            parse_sts_credentials(with_decl.as_bytes(), action, NOW_MS),
            Err(ParseError::ProviderError)
        );
    }
}

#[test]
fn sts_xml_refuses_broken_documents() {
    let good = sts_xml_doc(
        AssumeRole,
        "<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
             <SessionToken>t</SessionToken><Expiration>2011-07-15T23:28:33.359Z</Expiration>",
    );
    assert!(parse_sts_credentials(good.as_bytes(), AssumeRole, NOW_MS).is_ok());
    // Every truncation of a good document is refused, never accepted, never a panic.
    for end in 0..good.len() {
        assert!(parse_sts_credentials(&good.as_bytes()[..end], AssumeRole, NOW_MS).is_err());
    }
    let with = |fields: &str| sts_xml_doc(AssumeRole, fields);
    let ok_rest = "<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>\
                       <Expiration>2011-07-15T23:28:33.359Z</Expiration>";
    for doc in [
        "".to_string(),
        "   ".to_string(),
        "plain text".to_string(),
        "<AssumeRoleResponse>".to_string(),
        "<AssumeRoleResponse></AssumeRoleResult>".to_string(),
        "<AssumeRoleResponse/>".to_string(),
        "<AssumeRoleResponse><AssumeRoleResult></AssumeRoleResponse>".to_string(),
        format!("{good}<AssumeRoleResponse/>"),
        format!("{good}trailing"),
        format!("lead{good}"),
        format!("<!DOCTYPE x [<!ENTITY e \"v\">]>{good}"),
        "<?xml version=\"1.0\" <AssumeRoleResponse></AssumeRoleResponse>".to_string(),
        with(&format!("<AccessKeyId>A&bogus;</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>A&amp</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>A & B</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>&#0;</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>&#xD800;</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>&#x110000;</AccessKeyId>{ok_rest}")),
        with(&format!(
            "<AccessKeyId>&#99999999999;</AccessKeyId>{ok_rest}"
        )),
        with(&format!("<AccessKeyId>&#+65;</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId>&#x;</AccessKeyId>{ok_rest}")),
        with(&format!("<AccessKeyId><b>A</b></AccessKeyId>{ok_rest}")),
        with(&format!(
            "<AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId>{ok_rest}"
        )),
        with(&format!(
            "<AccessKeyId a=\"unterminated>A</AccessKeyId>{ok_rest}"
        )),
        with(&format!("<AccessKeyId>A</accesskeyid>{ok_rest}")),
        with(&format!("<Access=Key>A</Access=Key>{ok_rest}")),
        with(&format!("<>A</>{ok_rest}")),
        with(&format!(
            "<AccessKeyId>A</AccessKeyId><!-- unterminated {ok_rest}"
        )),
        with(&format!("<AccessKeyId><![CDATA[A</AccessKeyId>{ok_rest}")),
        // A `<` inside a start tag (outside quotes) ends nothing: refused,
        // not read as the attributes of the element before it.
        good.replacen("<AssumeRoleResponse", "<AssumeRoleResponse a<b", 1),
    ] {
        assert_eq!(
            parse_sts_credentials(doc.as_bytes(), AssumeRole, NOW_MS),
            Err(ParseError::Malformed),
            "{doc}"
        );
    }
    // A character reference to a control character decodes, then is refused.
    let ctl = with(&format!("<AccessKeyId>A&#10;B</AccessKeyId>{ok_rest}"));
    assert_eq!(
        parse_sts_credentials(ctl.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::BadField("AccessKeyId"))
    );
    let bad_exp = with("<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
                            <SessionToken>t</SessionToken><Expiration>2023-02-29T00:00:00Z</Expiration>");
    assert_eq!(
        parse_sts_credentials(bad_exp.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::BadExpiration)
    );
    let ctl_exp = with("<AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
                            <SessionToken>t</SessionToken><Expiration>2011-07-15&#10;T23:28:33Z</Expiration>");
    assert_eq!(
        parse_sts_credentials(ctl_exp.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::BadExpiration)
    );
}

#[test]
fn sts_json_as_envoy_reads_it() {
    let c = parse_sts_credentials(
        WEB_IDENTITY_JSON.as_bytes(),
        AssumeRoleWithWebIdentity,
        NOW_MS,
    )
    .unwrap();
    assert_eq!(
        parts(&c),
        ("akid", "secret", Some("token"), Some(1_514_869_445_000))
    );
    assert_eq!(
        parse_sts_credentials(WEB_IDENTITY_JSON.as_bytes(), AssumeRole, NOW_MS),
        Err(ParseError::Malformed)
    );
    // AssumeRole with an integer and with an RFC 3339 string, and the
    // extra members STS sends.
    for (exp, ms) in [
        (json!(1_514_862_300), 1_514_862_300_000),
        (json!("2018-01-02T03:05:00Z"), 1_514_862_300_000),
    ] {
        let a = "AssumeRole";
        let doc = json!({ format!("{a}Response"): {
            format!("{a}Result"): {
                "AssumedRoleUser": {"Arn": "arn:aws:sts::1:assumed-role/r/s", "AssumedRoleId": "AROA:s"},
                "Credentials": {"AccessKeyId": "A", "Expiration": exp, "SecretAccessKey": "s", "SessionToken": "t"},
                "PackedPolicySize": null, "SourceIdentity": null
            },
            "ResponseMetadata": {"RequestId": "r"}
        }});
        let c = parse_sts_credentials(doc.to_string().as_bytes(), AssumeRole, NOW_MS).unwrap();
        assert_eq!(parts(&c), ("A", "s", Some("t"), Some(ms)));
    }
}

#[test]
fn sts_json_names_every_missing_field_and_refuses_errors() {
    let full = json!({"AccessKeyId":"A","SecretAccessKey":"s","SessionToken":"t","Expiration":1_514_862_300});
    for action in [AssumeRole, AssumeRoleWithWebIdentity] {
        for name in [
            "AccessKeyId",
            "SecretAccessKey",
            "SessionToken",
            "Expiration",
        ] {
            let mut creds = full.clone();
            creds.as_object_mut().unwrap().remove(name);
            let doc = sts_json_doc(action, creds);
            assert_eq!(
                parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
                Err(ParseError::Missing(name))
            );
        }
        for (creds, err) in [
            (json!(null), ParseError::Missing("Credentials")),
            (json!(""), ParseError::Malformed),
            (
                json!({"AccessKeyId":"A","SecretAccessKey":"s","SessionToken":"t","Expiration":-5}),
                ParseError::BadExpiration,
            ),
            (
                json!({"AccessKeyId":"A","SecretAccessKey":"s","SessionToken":"t","Expiration":"soon"}),
                ParseError::BadExpiration,
            ),
        ] {
            let doc = sts_json_doc(action, creds);
            assert_eq!(
                parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
                Err(err),
                "{doc}"
            );
        }
        for doc in [
            r#"{"Error":{"Code":"AccessDenied","Message":"no","Type":"Sender"},"RequestId":"r"}"#,
            r#"{"ErrorResponse":{"Error":{"Code":"ExpiredTokenException","Message":"no"}}}"#,
            r#"  {"error":{"code":"Throttling"}}"#,
        ] {
            assert_eq!(
                parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
                Err(ParseError::ProviderError)
            );
        }
        for doc in ["{", "{}", r#"{"AssumeRoleResponse":[]}"#, "[1]", "\u{feff}"] {
            assert_eq!(
                parse_sts_credentials(doc.as_bytes(), action, NOW_MS),
                Err(ParseError::Malformed),
                "{doc}"
            );
        }
    }
}

// -- Hostile input ------------------------------------------------------

#[test]
fn every_parser_refuses_oversized_bodies_first() {
    let mut big = IMDS_SAMPLE.as_bytes().to_vec();
    big.resize(MAX_BODY_BYTES + 1, b' ');
    assert_eq!(parse_imds_role(&big), Err(ParseError::TooLarge));
    assert_eq!(
        parse_imds_credentials(&big, NOW_MS),
        Err(ParseError::TooLarge)
    );
    assert_eq!(
        parse_container_credentials(&big, NOW_MS),
        Err(ParseError::TooLarge)
    );
    assert_eq!(
        parse_sts_credentials(&big, AssumeRole, NOW_MS),
        Err(ParseError::TooLarge)
    );
    // Exactly the limit is still read.
    big.truncate(MAX_BODY_BYTES);
    assert!(parse_imds_credentials(&big, NOW_MS).is_ok());
}

#[test]
fn hostile_inputs_are_refused_without_panic() {
    let deep_json = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let deep_xml = format!(
        "<AssumeRoleResponse><AssumeRoleResult>{}",
        "<a>".repeat(20_000)
    );
    let wide_xml = format!(
        "<AssumeRoleResponse>{}</AssumeRoleResponse>",
        "<a/>".repeat(15_000)
    );
    let amps = format!(
        "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{}",
        "&".repeat(60_000)
    );
    let huge_number = format!("{{\"Expiration\":1{}}}", "0".repeat(5000));
    let bodies: Vec<Vec<u8>> = vec![
        deep_json.into_bytes(),
        deep_obj.into_bytes(),
        deep_xml.into_bytes(),
        wide_xml.into_bytes(),
        amps.into_bytes(),
        huge_number.into_bytes(),
        b"<".repeat(60_000),
        b"<?".repeat(30_000),
        b"\xff\xfe<\x00A\x00".to_vec(),
        b"{\"AccessKeyId\":\"\xff\"}".to_vec(),
        b"<AssumeRoleResponse>\xff</AssumeRoleResponse>".to_vec(),
        vec![0; 1000],
    ];
    for body in &bodies {
        let _ = parse_imds_role(body);
        assert!(parse_imds_credentials(body, NOW_MS).is_err());
        assert!(parse_container_credentials(body, NOW_MS).is_err());
        for action in [AssumeRole, AssumeRoleWithWebIdentity] {
            assert!(parse_sts_credentials(body, action, NOW_MS).is_err());
        }
    }
    assert_eq!(
        parse_sts_credentials(&bodies[2], AssumeRole, NOW_MS),
        Err(ParseError::Malformed)
    );
    assert_eq!(
        parse_sts_credentials(&bodies[3], AssumeRole, NOW_MS),
        Err(ParseError::Malformed)
    );
    let huge = format!(
        r#"{{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":1{}}}"#,
        "0".repeat(400)
    );
    assert!(parse_container_credentials(huge.as_bytes(), NOW_MS).is_err());
}

// -- Field bounds (review findings 6 and 8) ------------------------------

/// The five answer forms, each holding the same fields: IMDS, container,
/// STS JSON (epoch seconds) and STS XML for both actions. `exp` is an
/// RFC 3339 `Expiration`.
fn every_form(akid: &str, secret: &str, token: &str, exp: &str) -> Vec<(&'static str, String)> {
    let xml = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let exp_secs = parse_rfc3339_ms(exp).map_or(json!(exp), |ms| json!(ms / 1000));
    let fields = format!(
        "<AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
             <SessionToken>{}</SessionToken><Expiration>{exp}</Expiration>",
        xml(akid),
        xml(secret),
        xml(token)
    );
    vec![
            (
                "imds",
                json!({"Code":"Success","AccessKeyId":akid,"SecretAccessKey":secret,"Token":token,"Expiration":exp})
                    .to_string(),
            ),
            (
                "container",
                json!({"AccessKeyId":akid,"SecretAccessKey":secret,"Token":token,"Expiration":exp})
                    .to_string(),
            ),
            (
                "sts-json",
                sts_json_doc(
                    AssumeRole,
                    json!({"AccessKeyId":akid,"SecretAccessKey":secret,"SessionToken":token,"Expiration":exp_secs}),
                ),
            ),
            ("sts-xml", sts_xml_doc(AssumeRole, &fields)),
            (
                "sts-xml-web",
                sts_xml_doc(AssumeRoleWithWebIdentity, &fields),
            ),
        ]
}

fn parse_form(form: &str, body: &str) -> Result<Credentials, ParseError> {
    let body = body.as_bytes();
    match form {
        "imds" => parse_imds_credentials(body, NOW_MS),
        "container" => parse_container_credentials(body, NOW_MS),
        "sts-json" | "sts-xml" => parse_sts_credentials(body, AssumeRole, NOW_MS),
        _ => parse_sts_credentials(body, AssumeRoleWithWebIdentity, NOW_MS),
    }
}

/// Each form of the fields parsed; the error's Display and Debug are
/// checked to hold none of `hostile` (the value refused).
fn parse_every_form(
    akid: &str,
    secret: &str,
    token: &str,
    exp: &str,
    hostile: &str,
) -> Vec<Result<Credentials, ParseError>> {
    every_form(akid, secret, token, exp)
        .into_iter()
        .map(|(form, body)| {
            let r = parse_form(form, &body);
            if let Err(e) = &r {
                for shown in [e.to_string(), format!("{e:?}"), e.category().to_string()] {
                    assert!(!shown.contains(hostile), "{form}: {shown}");
                }
            }
            r
        })
        .collect()
}

const EXP: &str = "2021-09-18T03:31:56Z";

/// Finding 6: a 60,000-character key id was accepted (and copied into
/// every cache entry). AWS documents key ids of at most 128 characters.
#[test]
fn a_60_kb_key_id_is_refused_in_every_form() {
    let id = format!("ASIA{}", "K".repeat(59_996));
    for r in parse_every_form(&id, "s", "t", EXP, &id[..200]) {
        assert_eq!(r, Err(ParseError::BadField("AccessKeyId")));
    }
}

#[test]
fn key_ids_of_up_to_128_characters_of_any_style_are_accepted() {
    let longest = "A".repeat(MAX_ACCESS_KEY_ID_LEN);
    let too_long = "A".repeat(MAX_ACCESS_KEY_ID_LEN + 1);
    assert_eq!(MAX_ACCESS_KEY_ID_LEN, 128);
    // S3-compatible stores: lower case (MinIO, SeaweedFS), GCS HMAC ids,
    // short ids, any visible ASCII punctuation.
    for id in [
        longest.as_str(),
        "minioadmin",
        "ak-7f3e_test.user",
        "GOOG1EXAMPLE0123456789",
        "A",
        "a+b/c=d~!#$%&'()*,;:?@[]^`{|}\"<>\\",
    ] {
        for r in parse_every_form(id, "s", "t", EXP, "-") {
            assert_eq!(r.map(|c| c.access_key_id().to_owned()), Ok(id.to_owned()));
        }
    }
    for r in parse_every_form(&too_long, "s", "t", EXP, &too_long) {
        assert_eq!(r, Err(ParseError::BadField("AccessKeyId")));
    }
}

/// Finding 8: a key id with U+2028 passed (only Cc controls were refused)
/// and was logged raw: a log consumer splitting on it saw a forged line.
/// Every field is visible ASCII (0x21-0x7E) only.
#[test]
fn invisible_and_non_ascii_characters_are_refused_in_every_field() {
    let forged = "FORGED-LINE";
    for bad in [
        '\u{2028}',
        '\u{2029}',
        '\u{85}',
        ' ',
        '\u{7f}',
        '\n',
        '\r',
        '\t',
        '\0',
        '\u{1b}',
        '\u{a0}',
        '\u{200b}',
        '\u{feff}',
        '\u{202e}',
        'é',
        '\u{1F600}',
    ] {
        let v = format!("ASIAX{bad}{forged}");
        let hostile = format!("{bad}{forged}");
        for (field, r) in [
            ("AccessKeyId", parse_every_form(&v, "s", "t", EXP, &hostile)),
            (
                "SecretAccessKey",
                parse_every_form("A", &v, "t", EXP, &hostile),
            ),
            ("Token", parse_every_form("A", "s", &v, EXP, &hostile)),
        ]
        .into_iter()
        .flat_map(|(f, rs)| rs.into_iter().map(move |r| (f, r)))
        {
            let want = [field, "SessionToken"];
            match r {
                Err(ParseError::BadField(f)) if want.contains(&f) => {}
                other => panic!("{field} with {:?}: {other:?}", bad),
            }
        }
    }
}

#[test]
fn oversize_secrets_and_tokens_are_refused() {
    assert_eq!(MAX_SECRET_ACCESS_KEY_LEN, 128);
    assert_eq!(MAX_SESSION_TOKEN_LEN, 8192);
    let secret = "s".repeat(MAX_SECRET_ACCESS_KEY_LEN);
    let token = "t".repeat(MAX_SESSION_TOKEN_LEN);
    for r in parse_every_form("A", &secret, &token, EXP, "-") {
        let c = r.unwrap();
        assert_eq!(
            (c.secret_access_key(), c.session_token()),
            (secret.as_str(), Some(token.as_str()))
        );
    }
    let long_secret = format!("{secret}s");
    for r in parse_every_form("A", &long_secret, "t", EXP, &long_secret) {
        assert_eq!(r, Err(ParseError::BadField("SecretAccessKey")));
    }
    let long_token = format!("{token}t");
    for r in parse_every_form("A", "s", &long_token, EXP, &long_token) {
        match r {
            Err(ParseError::BadField("Token" | "SessionToken")) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Finding 8: an Expiration in year 9999 pinned a key until restart.
#[test]
fn credentials_claiming_to_outlive_the_bound_are_refused() {
    assert_eq!(MAX_CREDENTIAL_LIFETIME_MS, 36 * 3_600_000);
    for exp in ["9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z"] {
        for r in parse_every_form("A", "s", "t", exp, exp) {
            assert_eq!(r, Err(ParseError::ExpirationTooFar));
        }
    }
    // At the bound (to the second: RFC 3339 and epoch seconds), and past it.
    let now_ms = 1_700_000_000_000;
    // Unix ms (whole seconds) -> RFC 3339 (Howard Hinnant's `civil_from_days`).
    let at = |ms: u64| -> String {
        let secs = i64::try_from(ms / 1000).unwrap();
        let z = secs.div_euclid(86_400) + 719_468;
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let (d, m) = (doy - (153 * mp + 2) / 5 + 1, (mp + 2) % 12 + 1);
        let y = yoe + z.div_euclid(146_097) * 400 + i64::from(m <= 2);
        let t = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            t / 3600,
            t % 3600 / 60,
            t % 60
        )
    };
    // An hour after the time the answer is read at is fine.
    let in_an_hour = NOW_MS + 3_600_000;
    for r in parse_every_form("A", "s", "t", &at(in_an_hour), "-") {
        assert_eq!(r.map(|c| c.expires_at_ms()), Ok(Some(in_an_hour)));
    }
    for (exp_ms, ok) in [
        (now_ms, true),
        (now_ms - 3_600_000, true), // already expired: the caller's call
        (now_ms + MAX_CREDENTIAL_LIFETIME_MS, true),
        (now_ms + MAX_CREDENTIAL_LIFETIME_MS + 1000, false),
    ] {
        let exp = at(exp_ms);
        assert_eq!(parse_rfc3339_ms(&exp), Some(exp_ms), "{exp}");
        for (form, body) in every_form("A", "s", "t", &exp) {
            let body = body.as_bytes();
            let r = match form {
                "imds" => parse_imds_credentials(body, now_ms),
                "container" => parse_container_credentials(body, now_ms),
                "sts-json" | "sts-xml" => parse_sts_credentials(body, AssumeRole, now_ms),
                _ => parse_sts_credentials(body, AssumeRoleWithWebIdentity, now_ms),
            };
            if ok {
                assert_eq!(
                    r.map(|c| c.expires_at_ms()),
                    Ok(Some(exp_ms)),
                    "{form} {exp}"
                );
            } else {
                assert_eq!(r, Err(ParseError::ExpirationTooFar), "{form} {exp}");
            }
        }
    }
}

// -- Secrets ------------------------------------------------------------

#[test]
fn no_error_or_debug_output_holds_a_secret() {
    let good_exp = "2021-09-18T03:31:56Z";
    let json_bodies = [
        imds("A", SECRET, TOKEN, good_exp),
        imds("A", SECRET, TOKEN, "2023-02-29T00:00:00Z"),
        imds("", SECRET, TOKEN, good_exp),
        imds("A\\n", SECRET, TOKEN, good_exp),
        imds("A", SECRET, TOKEN, SECRET),
        imds("A", SECRET, &format!("{TOKEN}\\u0000"), good_exp),
        imds("A", SECRET, &format!("{TOKEN}\\u2028"), good_exp),
        imds("A", &format!("{SECRET} "), TOKEN, good_exp),
        imds("A", &SECRET.repeat(5), &TOKEN.repeat(300), good_exp),
        imds("A", SECRET, TOKEN, "9999-12-31T23:59:59Z"),
        format!(r#"{{"Code":"{SECRET}","Message":"{TOKEN}"}}"#),
        format!(r#"{{"code":"x","message":"{SECRET} {TOKEN}"}}"#),
        format!(r#"{{"SecretAccessKey":"{SECRET}","Token":"{TOKEN}"}}"#),
        format!(r#"{{"SecretAccessKey":"{SECRET}","Token":"{TOKEN}""#),
        format!(r#"{{"Error":{{"Message":"{SECRET} {TOKEN}"}}}}"#),
        sts_json_doc(
            AssumeRole,
            json!({"AccessKeyId":"A","SecretAccessKey":SECRET,"SessionToken":TOKEN,"Expiration":1}),
        ),
        sts_json_doc(
            AssumeRole,
            json!({"AccessKeyId":"A","SecretAccessKey":SECRET,"SessionToken":TOKEN,"Expiration":TOKEN}),
        ),
        sts_json_doc(
            AssumeRole,
            json!({"SecretAccessKey":SECRET,"SessionToken":TOKEN,"Expiration":1}),
        ),
    ];
    let xml_bodies = [
            sts_xml_doc(
                AssumeRole,
                &format!("<AccessKeyId>A</AccessKeyId><SecretAccessKey>{SECRET}</SecretAccessKey><SessionToken>{TOKEN}</SessionToken><Expiration>{good_exp}</Expiration>"),
            ),
            sts_xml_doc(
                AssumeRole,
                &format!("<SecretAccessKey>{SECRET}</SecretAccessKey><SessionToken>{TOKEN}</SessionToken><Expiration>{TOKEN}</Expiration><AccessKeyId>A</AccessKeyId>"),
            ),
            sts_xml_doc(
                AssumeRole,
                &format!("<SecretAccessKey>{SECRET}&bad;</SecretAccessKey><SessionToken>{TOKEN}"),
            ),
            format!("<ErrorResponse><Error><Message>{SECRET} {TOKEN}</Message></Error></ErrorResponse>"),
            format!("<{SECRET}>{TOKEN}</{SECRET}>"),
        ];
    let mut outputs = Vec::new();
    for body in json_bodies.iter().chain(&xml_bodies) {
        let body = body.as_bytes();
        let results = [
            parse_imds_credentials(body, NOW_MS),
            parse_container_credentials(body, NOW_MS),
            parse_sts_credentials(body, AssumeRole, NOW_MS),
            parse_sts_credentials(body, AssumeRoleWithWebIdentity, NOW_MS),
        ];
        for r in results {
            outputs.push(format!("{r:?}"));
            if let Err(e) = r {
                outputs.push(e.to_string());
                outputs.push(e.category().to_string());
            }
        }
        let role = parse_imds_role(body);
        outputs.push(format!("{role:?}"));
    }
    // The good documents did parse, so their Debug output was checked too.
    assert!(outputs.iter().any(|o| o.starts_with("Ok(Credentials")));
    for o in &outputs {
        assert!(!o.contains(SECRET) && !o.contains(TOKEN), "{o}");
        assert!(!o.contains("SECRETzq") && !o.contains("TOKENqH"), "{o}");
    }
}

#[test]
fn categories_and_action_names_are_stable() {
    let all = [
        (ParseError::TooLarge, "too_large"),
        (ParseError::Malformed, "malformed"),
        (ParseError::Missing("Token"), "missing_field"),
        (ParseError::ProviderError, "provider_error"),
        (ParseError::BadExpiration, "bad_expiration"),
        (ParseError::BadRoleName, "bad_role_name"),
        (ParseError::BadField("AccessKeyId"), "bad_field"),
        (ParseError::ExpirationTooFar, "expiration_too_far"),
    ];
    for (e, cat) in all {
        assert_eq!(e.category(), cat);
        assert!(!e.to_string().is_empty());
    }
    assert!(ParseError::Missing("Token").to_string().contains("Token"));
    assert!(ParseError::BadField("SessionToken")
        .to_string()
        .contains("SessionToken"));
    assert!(ParseError::ExpirationTooFar.to_string().contains("36 h"));
    assert_eq!(AssumeRole.as_str(), "AssumeRole");
    assert_eq!(
        AssumeRoleWithWebIdentity.as_str(),
        "AssumeRoleWithWebIdentity"
    );
}
