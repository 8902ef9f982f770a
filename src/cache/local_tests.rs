use super::*;

#[test]
fn clear_forgets_every_rewrite() {
    let mut c = LocalCache::new(4);
    c.put("GET", "h", "/a", 0, "/x?sig", 10_000);
    assert!(c.get("GET", "h", "/a", 1).is_some());
    c.clear();
    assert!(c.get("GET", "h", "/a", 1).is_none());
    c.put("GET", "h", "/a", 0, "/y?sig", 10_000);
    assert_eq!(
        c.get("GET", "h", "/a", 1).map(|h| h.rewrite),
        Some("/y?sig")
    );
}

#[test]
fn serves_only_exact_and_fresh_requests() {
    let mut c = LocalCache::new(8);
    c.put("GET", "h", "/m/a", 0, "/signed-a", 1000);
    assert_eq!(
        c.get("GET", "h", "/m/a", 999),
        Some(LocalHit {
            origin: 0,
            rewrite: "/signed-a",
            fresh_until_ms: 1_000,
        })
    );
    assert_eq!(
        c.get("GET", "h", "/m/a", 1000),
        None,
        "due entries go back to shared data"
    );
    assert_eq!(c.get("HEAD", "h", "/m/a", 0), None);
    assert_eq!(c.get("GET", "other", "/m/a", 0), None);
    assert_eq!(c.get("GET", "h", "/m/a?x", 0), None);
}

#[test]
fn bounded_and_replacing() {
    let mut c = LocalCache::new(4);
    for i in 0..100 {
        c.put("GET", "h", &format!("/m/{i}"), 0, "/s", u64::MAX);
    }
    assert_eq!(c.slots.len(), 4);
    assert!(
        c.get("GET", "h", "/m/99", 0).is_some(),
        "the newest entry is kept"
    );
    let hits = (0..100)
        .filter(|i| c.get("GET", "h", &format!("/m/{i}"), 0).is_some())
        .count();
    assert!(hits <= 4);
}

/// Requests are spread over the slots: a cache with room to spare keeps
/// most of a handful of requests that differ only in their path, rather
/// than all of them fighting over one slot.
#[test]
fn distinct_requests_spread_over_the_slots() {
    let mut c = LocalCache::new(64);
    let paths: Vec<String> = (0..16).map(|i| format!("/m/img-{i}.jpg")).collect();
    for p in &paths {
        c.put("GET", "h", p, 0, p, u64::MAX);
    }
    let kept = paths
        .iter()
        .filter(|p| c.get("GET", "h", p, 0).is_some())
        .count();
    assert!(kept >= 12, "only {kept} of 16 kept in 64 slots");
}

#[test]
fn oversized_requests_are_not_kept() {
    let mut c = LocalCache::new(4);
    let rewrite = "/signed";
    let fits = format!(
        "/m/a?{}",
        "j".repeat(LOCAL_ENTRY_MAX_BYTES - 5 - 3 - 1 - rewrite.len())
    );
    c.put("GET", "h", &fits, 0, rewrite, u64::MAX);
    assert!(c.get("GET", "h", &fits, 0).is_some());
    let junk = format!("{fits}j");
    c.put("GET", "h", &junk, 0, rewrite, u64::MAX);
    assert!(
        c.get("GET", "h", &junk, 0).is_none(),
        "one byte over the cap"
    );
    let host = "h".repeat(LOCAL_ENTRY_MAX_BYTES);
    c.put("GET", &host, "/m/a", 0, rewrite, u64::MAX);
    assert!(c.get("GET", &host, "/m/a", 0).is_none());
}

#[test]
fn size_zero_disables() {
    let mut c = LocalCache::new(0);
    c.put("GET", "h", "/m/a", 0, "/s", u64::MAX);
    assert_eq!(c.get("GET", "h", "/m/a", 0), None);
}
