use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn defaults() -> Vec<String> {
    names(&DEFAULT_CONTENT_TYPES)
}

fn one(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), value.to_string())]
}

/// docs/configuration.md, Response overrides: a `response-*` name the origin does
/// not allow is refused, whatever its case or encoding; other names and
/// allowed overrides pass.
#[test]
fn unlisted_override_names_are_refused() {
    let allow = names(&["versionId", CONTENT_TYPE]);
    for q in [
        "response-content-disposition=inline",
        "versionId=1&response-cache-control=no-store",
        "Response-Content-Type=video%2Fmp4",
        "response%2Dexpires=0",
        "response-",
        "RESPONSE-x",
    ] {
        assert_eq!(
            check(q, &allow, &[], &defaults()),
            Err(OverrideError::NotAllowed),
            "{q}"
        );
    }
    for q in [
        "",
        "versionId=1",
        "response-content-type=video%2Fmp4",
        "respons=1",
        "responsex-y=1",
        "x-response-content-type=1",
        "response%ZZ=1",
        "a=response-content-disposition",
    ] {
        assert_eq!(check(q, &allow, &[], &defaults()), Ok(()), "{q}");
    }
    assert_eq!(
        check("response-content-type=1", &[], &[], &defaults()),
        Err(OverrideError::NotAllowed)
    );
}

/// Content types come from the allow-list, compared case-insensitively
/// and without parameters; document types are not in the defaults.
#[test]
fn content_type_values_come_from_the_allow_list() {
    let allow = names(&[CONTENT_TYPE]);
    let list = defaults();
    for ok in [
        "video/mp4",
        "VIDEO/MP4",
        "image/png",
        "application/octet-stream",
    ] {
        assert_eq!(
            check("", &allow, &one(CONTENT_TYPE, ok), &list),
            Ok(()),
            "{ok}"
        );
    }
    for bad in [
        "text/html",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "video/mp4; charset=utf-8",
        "video/mp4 ",
        "",
        "text/html\r\nx: y",
    ] {
        assert_eq!(
            check("", &allow, &one(CONTENT_TYPE, bad), &list),
            Err(OverrideError::ContentType),
            "{bad:?}"
        );
    }
    // An operator who lists text/html on purpose gets it.
    let html = names(&["text/html"]);
    assert_eq!(
        check("", &allow, &one(CONTENT_TYPE, "text/html"), &html),
        Ok(())
    );
    assert_eq!(
        check("", &allow, &one(CONTENT_TYPE, "video/mp4"), &html),
        Err(OverrideError::ContentType)
    );
}

/// Dispositions: inline or attachment, with an optional quoted or RFC
/// 8187 file name; nothing else.
#[test]
fn content_disposition_values_are_well_formed() {
    let allow = names(&[CONTENT_DISPOSITION]);
    let list = defaults();
    let long = format!("attachment; filename=\"{}\"", "a".repeat(255));
    for ok in [
        "inline",
        "attachment",
        "ATTACHMENT",
        "attachment; filename=\"my clip.mp4\"",
        "inline;filename=\"a.mp4\"",
        "attachment; filename*=UTF-8''my%20clip%20%C3%BC.mp4",
        "attachment; filename=\"clip.mp4\"; filename*=utf-8''clip%C3%BC.mp4",
        long.as_str(),
    ] {
        let got = check("", &allow, &one(CONTENT_DISPOSITION, ok), &list);
        assert_eq!(got, Ok(()), "{ok:?}");
    }
    let too_long = format!("attachment; filename=\"{}\"", "a".repeat(256));
    for bad in [
        "",
        "form-data",
        "attachment; filename=clip.mp4",
        "attachment; filename=\"\"",
        "attachment; filename=\"a\"b.mp4\"",
        "attachment; filename=\"a\\\".mp4\"",
        "attachment; filename=\"a\r\nb\"",
        "attachment; filename=\"a\u{7f}\"",
        "attachment; filename=\"é.mp4\"",
        "attachment; filename=\"a\"; filename=\"b\"",
        "attachment; filename*=UTF-8''a; filename=\"b\"",
        "attachment; filename*=UTF-8''a; filename*=UTF-8''b",
        "attachment; filename*=ISO-8859-1''a",
        "attachment; filename*=UTF-8''a%0Ab",
        "attachment; filename*=UTF-8''a%E2%80%A8b",
        "attachment; filename*=UTF-8''%FF",
        "attachment; filename*=UTF-8''a b",
        "attachment; filename*=UTF-8''",
        "attachment; size=3",
        "attachment;",
        "inline, attachment",
        too_long.as_str(),
    ] {
        assert_eq!(
            check("", &allow, &one(CONTENT_DISPOSITION, bad), &list),
            Err(OverrideError::ContentDisposition),
            "{bad:?}"
        );
    }
}

/// Other allowed overrides (an operator's choice) are not value-checked.
#[test]
fn other_allowed_overrides_pass_as_configured() {
    let allow = names(&["response-cache-control"]);
    let q = one("response-cache-control", "no-store");
    assert_eq!(
        check("response-cache-control=no-store", &allow, &q, &[]),
        Ok(())
    );
}

/// Configured types are media types without parameters, lower-cased.
#[test]
fn configured_content_types_are_media_types() {
    assert_eq!(
        compile_content_type("Video/MP4"),
        Ok("video/mp4".to_string())
    );
    assert_eq!(
        compile_content_type("application/vnd.apple.mpegurl"),
        Ok("application/vnd.apple.mpegurl".to_string())
    );
    let long = format!("a/{}", "b".repeat(98));
    assert!(compile_content_type(&long).is_ok());
    for bad in [
        "",
        "video",
        "video/",
        "/mp4",
        "video/mp4; codecs=avc1",
        "video/mp4/x",
        "vid eo/mp4",
        &format!("a/{}", "b".repeat(99)),
    ] {
        assert!(compile_content_type(bad).is_err(), "{bad:?}");
    }
    assert!(DEFAULT_CONTENT_TYPES
        .iter()
        .all(|t| compile_content_type(t).as_deref() == Ok(*t)));
}

/// The document types a startup warning names; no default is one.
#[test]
fn document_types_are_recognised() {
    for t in [
        "text/html",
        "TEXT/HTML",
        "image/svg+xml",
        "application/xhtml+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/dash+xml",
        "multipart/x-mixed-replace",
        "application/pdf",
    ] {
        assert!(renders_as_document(t), "{t}");
    }
    for t in [
        "text/plain",
        "text/csv",
        "text/vtt",
        "video/mp4",
        "image/png",
    ] {
        assert!(!renders_as_document(t), "{t}");
    }
    assert!(!DEFAULT_CONTENT_TYPES.iter().any(|t| renders_as_document(t)));
}
