use super::*;
use crate::cache::Outcome;
use crate::request::decide::LocalReply;
use crate::request::headers::ORIGIN_MARKER_HEADER;
use crate::testing::{host_at, FakeHost, FakeStore};
use serde_json::json;
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A host clock that must not be read.
fn unread() -> SystemTime {
    panic!("the host's clock was read")
}

/// A request that already read the host's clock: `ms`.
fn exact_at(ms: u64) -> RequestClock<'static> {
    RequestClock::new(None, Some(at(ms)), &unread)
}

/// One origin `media` on `/media/`, inline keys, the given extra origin fields.
fn config(extra: serde_json::Value) -> Config {
    config_with(extra, true)
}

fn config_with(extra: serde_json::Value, keys: bool) -> Config {
    let mut o = json!({
        "name": "media", "match": {"prefix": "/media/"},
        "endpoint": "http://s3.local:9000", "bucket": "media", "region": "us-east-1",
        "expires_in": 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        o.as_object_mut().unwrap().insert(k.clone(), v.clone());
    }
    let mut doc = json!({ "origins": [o] });
    if keys {
        doc["credentials"] =
            json!({"source": "inline", "access_key_id": "AKID", "secret_access_key": "s3cr3t"});
    }
    Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap()
}

fn head<'a>(method: &'a str, path: &'a str) -> HeaderView<'a> {
    HeaderView {
        method,
        authority: "envoy",
        path: Some(path.as_bytes()),
        request_id_raw: b"rid",
        origin: None,
        auth_headers: vec!["authorization"],
        marker: false,
    }
}

/// The world of one worker: the shared store, its local copy, and a host that
/// records what was done to each request.
struct World {
    store: FakeStore,
    local: LocalCache,
}

impl World {
    fn new() -> Self {
        World {
            store: FakeStore::default(),
            local: LocalCache::new(64),
        }
    }

    fn run<'c>(
        &mut self,
        c: &'c Config,
        h: &HeaderView<'_>,
        secs: u64,
        req: &mut FakeHost,
    ) -> (Decision<'c>, Handled<'c>) {
        let host = host_at(&self.store, secs, None);
        let path = h.path.unwrap();
        handle(c, &host, &mut self.local, h, path, req)
    }
}

fn set_path(calls: &[String]) -> &str {
    calls
        .iter()
        .find_map(|c| c.strip_prefix("set :path="))
        .unwrap_or("")
}

#[test]
fn a_signed_request_is_rewritten_marked_counted_and_remembered() {
    let c = config(json!({}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let h = head("GET", "/media/a.mp4?X-Amz-Credential=x");
    let (d, done) = w.run(&c, &h, 1000, &mut req);
    assert!(matches!(d, Decision::Forward { fallback: None, .. }));
    assert_eq!(done.index, Some(0));
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(done.failure, None);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Miss));
    assert_eq!(done.record.cache, Some(Outcome::Miss));
    assert_eq!(done.record.signed, 1);
    // The header and the client's X-Amz-* parameter.
    assert_eq!(done.record.auth_stripped, 2);
    assert_eq!(
        req.calls.first().map(String::as_str),
        Some("remove authorization")
    );
    assert_eq!(
        req.calls.get(1).map(String::as_str),
        Some("set :authority=s3.local:9000")
    );
    let signed = set_path(&req.calls).to_string();
    assert!(
        signed.starts_with("/media/a.mp4?X-Amz-Algorithm="),
        "{signed}"
    );
    assert!(signed.contains("&X-Amz-Signature="));
    assert_eq!(
        req.calls.last(),
        Some(&format!("set {ORIGIN_MARKER_HEADER}=media"))
    );

    // The same request again: the worker's local copy serves the same URL.
    let mut again = FakeHost::default();
    let path = "/media/a.mp4?X-Amz-Credential=x";
    let hit = local_hit(&c, &w.local, &h, path, &mut exact_at(1_001_000), &mut again).unwrap();
    assert_eq!(hit.index, Some(0));
    assert_eq!(hit.record.outcome, Some(RequestOutcome::Hit));
    assert_eq!(hit.record.cache, Some(Outcome::Hit));
    assert_eq!(hit.record.auth_stripped, 2);
    assert_eq!(hit.acted, Acted::Forwarded);
    assert_eq!(set_path(&again.calls), signed);
    // Another path, or the same one from another authority, is not a hit.
    assert!(local_hit(
        &c,
        &w.local,
        &h,
        "/media/b.mp4",
        &mut exact_at(1_001_000),
        &mut again
    )
    .is_none());
    let other = HeaderView {
        authority: "other",
        ..head("GET", path)
    };
    assert!(local_hit(
        &c,
        &w.local,
        &other,
        path,
        &mut exact_at(1_001_000),
        &mut again
    )
    .is_none());
    // Past its freshness (600 s URLs), the local copy has nothing.
    assert!(local_hit(&c, &w.local, &h, path, &mut exact_at(2_000_000), &mut again).is_none());

    // A second worker (empty local copy) finds the URL in the shared cache.
    let mut second = World {
        store: std::mem::take(&mut w.store),
        local: LocalCache::new(64),
    };
    let mut req2 = FakeHost::default();
    let (_, done2) = second.run(&c, &h, 1001, &mut req2);
    assert_eq!(done2.record.outcome, Some(RequestOutcome::Hit));
    assert_eq!(done2.record.signed, 0);
    assert_eq!(set_path(&req2.calls), signed);
}

#[test]
fn a_refused_rewrite_is_answered_503_counted_denied_and_not_remembered() {
    let c = config(json!({}));
    let mut w = World::new();
    // The third write is `:path`.
    let mut req = FakeHost {
        fail_write: Some(2),
        ..FakeHost::default()
    };
    let h = head("GET", "/media/a.mp4");
    let (_, done) = w.run(&c, &h, 1000, &mut req);
    assert_eq!(done.acted, Acted::Replied(actions::REWRITE_FAILED));
    assert!(done.acted.stops());
    assert_eq!(done.record.outcome, Some(RequestOutcome::Denied));
    assert_eq!(done.record.auth_stripped, 0);
    assert_eq!(done.record.host.set_header, 1);
    assert!(local_hit(
        &c,
        &w.local,
        &h,
        "/media/a.mp4",
        &mut exact_at(1_000_500),
        &mut req
    )
    .is_none());
    // Neither the rewrite nor the 503: the request goes on unmarked.
    let mut req = FakeHost {
        fail_write: Some(0),
        fail_reply: true,
        ..FakeHost::default()
    };
    let (_, done) = w.run(&c, &h, 1000, &mut req);
    assert_eq!(done.acted, Acted::Unmarked);
    assert!(!done.acted.stops());
    assert_eq!(done.record.host.local_reply, 1);
    assert!(!req.calls.iter().any(|c| c.contains(ORIGIN_MARKER_HEADER)));
}

#[test]
fn unmatched_requests_pass_untouched_except_for_a_forged_marker() {
    let c = config(json!({}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let (d, done) = w.run(&c, &head("GET", "/other/x"), 1000, &mut req);
    assert_eq!(d, Decision::Bypass);
    assert_eq!(done.index, None);
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Bypass));
    assert!(req.calls.is_empty());
    let forged = HeaderView {
        marker: true,
        ..head("GET", "/other/x")
    };
    let (_, done) = w.run(&c, &forged, 1000, &mut req);
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(req.calls, [format!("remove {ORIGIN_MARKER_HEADER}")]);
}

#[test]
fn client_mistakes_are_refused_with_a_debug_note() {
    let c = config(json!({}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let forged = HeaderView {
        marker: true,
        ..head("POST", "/media/a.mp4")
    };
    let (_, done) = w.run(&c, &forged, 1000, &mut req);
    assert_eq!(done.acted, Acted::Replied(LocalReply::METHOD_NOT_ALLOWED));
    assert_eq!(done.index, Some(0));
    assert_eq!(done.record.outcome, Some(RequestOutcome::Denied));
    assert_eq!(done.record.rejected, Some("method_not_allowed"));
    assert_eq!(
        done.failure,
        Some(FailureNote {
            warn: false,
            event: "presign_rejected",
            category: "method_not_allowed",
            status: 405,
            origin: "media",
        })
    );
    // The forged marker goes before the reply.
    assert_eq!(
        req.calls.first(),
        Some(&format!("remove {ORIGIN_MARKER_HEADER}"))
    );
}

#[test]
fn signing_failures_are_refused_or_forwarded_unsigned_with_a_warning() {
    let deny = config_with(json!({}), false);
    let mut w = World::new();
    let mut req = FakeHost::default();
    let (_, done) = w.run(&deny, &head("GET", "/media/a.mp4"), 1000, &mut req);
    let note = done.failure.unwrap();
    assert!(note.warn);
    assert_eq!(note.event, "presign_rejected");
    assert_eq!(note.category, "no_credentials");
    assert_eq!(note.status, 503);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Denied));
    assert_eq!(done.record.sign_error, Some("no_credentials"));

    let pass = config_with(json!({"on_error": "passthrough"}), false);
    let mut req = FakeHost::default();
    let h = head("GET", "/media/a.mp4?versionId=1");
    let (_, done) = w.run(&pass, &h, 1000, &mut req);
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Fallback));
    let note = done.failure.unwrap();
    assert_eq!(
        (note.warn, note.event, note.status),
        (true, "presign_fallback", 0)
    );
    assert_eq!(note.category, "no_credentials");
    assert_eq!(set_path(&req.calls), "/media/a.mp4");
    // An unsigned URL is never remembered.
    assert!(local_hit(
        &pass,
        &w.local,
        &h,
        "/media/a.mp4?versionId=1",
        &mut exact_at(1_000_100),
        &mut req
    )
    .is_none());
}

#[test]
fn passed_through_methods_lose_client_credentials_only() {
    let c = config(json!({"other_methods": "passthrough"}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let h = head("PUT", "/media/a.mp4?uploadId=7&X-Amz-Signature=abc");
    let (_, done) = w.run(&c, &h, 1000, &mut req);
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Bypass));
    assert_eq!(done.record.auth_stripped, 2);
    assert_eq!(done.record.signed, 0);
    assert_eq!(set_path(&req.calls), "/media/a.mp4?uploadId=7");
    assert!(!req.calls.iter().any(|c| c.starts_with("set :authority")));
}

#[test]
fn redirects_carry_their_max_age_and_are_remembered() {
    let c = config(json!({"delivery": "redirect", "public_endpoint": "https://cdn.example.com"}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let h = head("GET", "/media/a.mp4");
    let (d, done) = w.run(&c, &h, 1000, &mut req);
    assert!(matches!(d, Decision::Redirect { fallback: None, .. }));
    assert_eq!(done.acted, Acted::Redirected);
    assert!(done.acted.stops());
    assert_eq!(done.record.outcome, Some(RequestOutcome::Redirect));
    let reply = req.calls.last().unwrap().clone();
    assert!(reply.starts_with("reply 307"), "{reply}");
    assert!(
        reply.contains("https://cdn.example.com/media/a.mp4?X-Amz-"),
        "{reply}"
    );
    assert!(reply.contains("max-age="), "{reply}");
    // The local copy answers the same redirect.
    let mut again = FakeHost::default();
    let hit = local_hit(
        &c,
        &w.local,
        &h,
        "/media/a.mp4",
        &mut exact_at(1_000_100),
        &mut again,
    )
    .unwrap();
    assert_eq!(hit.record.outcome, Some(RequestOutcome::Redirect));
    assert_eq!(hit.acted, Acted::Redirected);
    let location = |r: &str| {
        r.split("location\", \"")
            .nth(1)
            .map(|s| s.split('"').next().map(str::to_string))
    };
    assert_eq!(location(again.calls.last().unwrap()), location(&reply));

    // A refused 307: unmarked, counted denied, not remembered.
    let mut w = World::new();
    let mut req = FakeHost {
        fail_reply: true,
        ..FakeHost::default()
    };
    let (_, done) = w.run(&c, &h, 1000, &mut req);
    assert_eq!(done.acted, Acted::Unmarked);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Denied));
    assert_eq!(done.record.host.local_reply, 1);
    assert!(local_hit(
        &c,
        &w.local,
        &h,
        "/media/a.mp4",
        &mut exact_at(1_000_100),
        &mut req
    )
    .is_none());
}

#[test]
fn a_redirect_origins_playlists_are_proxied_and_counted_on_that_origin() {
    let c = config(json!({"delivery": "redirect", "public_endpoint": "https://cdn.example.com"}));
    let mut w = World::new();
    let mut req = FakeHost::default();
    let h = head("GET", "/media/v/index.m3u8");
    let (d, done) = w.run(&c, &h, 1000, &mut req);
    assert!(matches!(d, Decision::Forward { .. }));
    assert_eq!(done.index, Some(0));
    assert_eq!(done.acted, Acted::Forwarded);
    assert!(set_path(&req.calls).starts_with("/media/v/index.m3u8?X-Amz-"));
    // The proxy twin's rewrite is not remembered: a local hit is served with
    // the configured origin's delivery, a redirect.
    assert!(local_hit(
        &c,
        &w.local,
        &h,
        "/media/v/index.m3u8",
        &mut exact_at(1_000_100),
        &mut req
    )
    .is_none());
    assert_eq!(
        index_of(&c, c.origins[0].proxied.as_deref().unwrap()),
        Some(0)
    );
}

#[test]
fn the_dry_run_host_accepts_everything() {
    let c = config(json!({}));
    let mut w = World::new();
    let host = host_at(&w.store, 1000, None);
    let h = head("GET", "/media/a.mp4");
    let (_, done) = handle(&c, &host, &mut w.local, &h, b"/media/a.mp4", &mut DryRun);
    assert_eq!(done.acted, Acted::Forwarded);
    assert_eq!(done.record.outcome, Some(RequestOutcome::Miss));
}

#[test]
fn a_request_is_counted_on_the_origin_it_matched() {
    let doc = json!({
        "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
        "origins": [
            {"name": "media", "match": {"prefix": "/media/"}, "endpoint": "http://s3.local:9000",
             "bucket": "media", "region": "us-east-1"},
            {"name": "images", "match": {"prefix": "/images/"}, "endpoint": "http://s3.local:9000",
             "bucket": "images", "region": "us-east-1", "delivery": "redirect",
             "public_endpoint": "https://cdn.example.com"},
        ],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let mut w = World::new();
    let mut req = FakeHost::default();
    for (path, index) in [
        ("/media/a.jpg", 0),
        ("/images/a.jpg", 1),
        ("/images/i.m3u8", 1),
    ] {
        let (_, done) = w.run(&c, &head("GET", path), 1000, &mut req);
        assert_eq!(done.index, Some(index), "{path}");
        let (_, refused) = w.run(&c, &head("DELETE", path), 1000, &mut req);
        assert_eq!(refused.index, Some(index), "{path}");
    }
    assert_eq!(index_of(&c, &c.origins[1]), Some(1));
    assert_eq!(
        index_of(&c, c.origins[1].proxied.as_deref().unwrap()),
        Some(1)
    );
    // The second origin's rewrites are remembered under its own index.
    let hit = local_hit(
        &c,
        &w.local,
        &head("GET", "/images/a.jpg"),
        "/images/a.jpg",
        &mut exact_at(1_000_100),
        &mut req,
    );
    assert_eq!(hit.map(|h| h.index), Some(Some(1)));
}

/// A clock that counts its reads and answers `ms`.
fn counting(reads: &Cell<u32>, ms: u64) -> impl Fn() -> SystemTime + '_ {
    move || {
        reads.set(reads.get() + 1);
        at(ms)
    }
}

#[test]
fn a_proxied_hit_far_from_its_refresh_point_reads_no_clock() {
    // 600 s URLs signed at 1000 s (dated 960 s, aligned): fresh until 1440 s
    // (refresh_before 120 s).
    let c = config(json!({}));
    let mut w = World::new();
    let h = head("GET", "/media/a.mp4");
    w.run(&c, &h, 1000, &mut FakeHost::default());
    let path = "/media/a.mp4";
    let fresh_until = w.local.find("GET", "envoy", path).unwrap().fresh_until_ms;
    assert_eq!(fresh_until, 1_440_000);
    let reads = Cell::new(0);
    // The tick clock alone: more than the margin before the refresh point.
    let read = counting(&reads, 1_100_000);
    let tick = fresh_until - crate::clock::TICK_CLOCK_MARGIN_MS - 1;
    let mut clock = RequestClock::new(Some(tick), None, &read);
    let mut req = FakeHost::default();
    let hit = local_hit(&c, &w.local, &h, path, &mut clock, &mut req).unwrap();
    assert_eq!(hit.record.outcome, Some(RequestOutcome::Hit));
    assert_eq!(reads.get(), 0);
    assert_eq!(clock.read_so_far(), None);
    // Within the margin the host's clock decides, read once: still fresh...
    let mut clock = RequestClock::new(Some(tick + 1), None, &read);
    assert!(local_hit(&c, &w.local, &h, path, &mut clock, &mut req).is_some());
    assert_eq!(reads.get(), 1);
    // ...or due for refresh, even though the tick clock lags behind it.
    let late = counting(&reads, fresh_until);
    let mut clock = RequestClock::new(Some(tick + 1), None, &late);
    assert!(local_hit(&c, &w.local, &h, path, &mut clock, &mut req).is_none());
    assert_eq!(reads.get(), 2);
    // The full path then signs at the time already read.
    assert_eq!(clock.read_so_far(), Some(at(fresh_until)));
    // Without ticks every hit reads the host's clock.
    let mut clock = RequestClock::new(None, None, &read);
    assert!(local_hit(&c, &w.local, &h, path, &mut clock, &mut req).is_some());
    assert_eq!(reads.get(), 3);
}

#[test]
fn a_redirect_hit_always_reads_the_clock_for_its_max_age() {
    let c = config(json!({"delivery": "redirect", "public_endpoint": "https://cdn.example.com"}));
    let mut w = World::new();
    let h = head("GET", "/media/a.mp4");
    w.run(&c, &h, 1000, &mut FakeHost::default());
    let reads = Cell::new(0);
    // 600 s URLs signed at 1000 s (dated 960 s) expire at 1560 s; min_remaining 24 s.
    let read = counting(&reads, 1_100_000);
    let mut clock = RequestClock::new(Some(1_000_000), None, &read);
    let mut req = FakeHost::default();
    let hit = local_hit(&c, &w.local, &h, "/media/a.mp4", &mut clock, &mut req).unwrap();
    assert_eq!(hit.acted, Acted::Redirected);
    assert_eq!(reads.get(), 1);
    let reply = req.calls.last().unwrap();
    // (1560 - 24 - 1100) s from the exact time, not from the tick clock's 1000 s.
    assert!(reply.contains("max-age=436"), "{reply}");
}
