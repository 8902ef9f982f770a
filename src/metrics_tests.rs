use super::*;
use crate::cache::StoreOps;
use crate::request::actions::HostFailures;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Records definitions and values by name.
#[derive(Default)]
struct Recorder {
    names: RefCell<Vec<(MetricKind, String)>>,
    values: RefCell<BTreeMap<String, u64>>,
}

impl Recorder {
    fn get(&self, name: &str) -> u64 {
        self.values.borrow().get(name).copied().unwrap_or(0)
    }
}

impl MetricsBackend for Recorder {
    fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut n = self.names.borrow_mut();
        n.push((kind, name.to_string()));
        u32::try_from(n.len() - 1).ok()
    }
    fn add(&self, id: u32, delta: u64) {
        let name = self.names.borrow()[id as usize].1.clone();
        *self.values.borrow_mut().entry(name).or_default() += delta;
    }
    fn record(&self, id: u32, value: u64) {
        let name = self.names.borrow()[id as usize].1.clone();
        self.values.borrow_mut().insert(name, value);
    }
}

#[test]
fn names_carry_the_origin_and_labels() {
    let r = Recorder::default();
    OriginMetrics::define(&r, "media");
    let names = r.names.borrow();
    assert!(names
        .iter()
        .all(|(_, n)| n.starts_with("envoy_presign.") && n.contains(".origin.media")));
    assert!(names
        .iter()
        .any(|(_, n)| n == "envoy_presign.requests.origin.media.outcome.hit"));
    assert!(names
        .iter()
        .any(|(_, n)| n == "envoy_presign.requests.origin.media.outcome.redirect"));
    assert!(names
        .iter()
        .any(|(_, n)| n == "envoy_presign.store_ops.origin.media.op.set_cas_conflict"));
    assert!(names
        .iter()
        .any(|(k, n)| *k == MetricKind::Histogram
            && n == "envoy_presign.sign_duration_us.origin.media"));
    let unique: std::collections::HashSet<_> = names.iter().map(|(_, n)| n).collect();
    assert_eq!(unique.len(), names.len(), "no name defined twice");
}

#[test]
fn a_request_maps_onto_counters() {
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    let ops = StoreOps {
        get_ok: 2,
        set_ok: 1,
        cas_conflicts: 1,
        corrupt: 1,
        evictions: 1,
        ..StoreOps::default()
    };
    m.record_request(
        &r,
        &RequestRecord {
            outcome: Some(RequestOutcome::of(Some(Outcome::Expired))),
            cache: Some(Outcome::Expired),
            ops,
            signed: 1,
            auth_stripped: 2,
            host: HostFailures {
                set_header: 1,
                local_reply: 2,
            },
            sign_us: Some(40),
            filter_us: Some(55),
            ..RequestRecord::default()
        },
    );
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.miss"), 1);
    assert_eq!(r.get("envoy_presign.cache_misses.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.cache_expired.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.urls_signed.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.cache_corrupt.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.store_ops.origin.o.op.get_ok"), 2);
    assert_eq!(
        r.get("envoy_presign.store_ops.origin.o.op.set_cas_conflict"),
        1
    );
    assert_eq!(r.get("envoy_presign.auth_stripped.origin.o"), 2);
    assert_eq!(r.get("envoy_presign.cache_evictions.origin.o"), 1);
    assert_eq!(
        r.get("envoy_presign.hostcall_errors.origin.o.call.set_header"),
        1
    );
    assert_eq!(
        r.get("envoy_presign.hostcall_errors.origin.o.call.local_reply"),
        2
    );
    assert_eq!(r.get("envoy_presign.sign_duration_us.origin.o"), 40);

    m.record_request(
        &r,
        &RequestRecord {
            outcome: Some(RequestOutcome::Denied),
            sign_error: Some("no_credentials"),
            ..RequestRecord::default()
        },
    );
    assert_eq!(
        r.get("envoy_presign.sign_errors.origin.o.category.no_credentials"),
        1
    );
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.denied"), 1);
}

/// Each refused response override counts in `overrides_refused` under
/// its reply's code; other refusals (a bad path, 405) do not.
#[test]
fn refused_overrides_count_by_category() {
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    for code in OVERRIDE_CATEGORIES
        .iter()
        .chain(OVERRIDE_CATEGORIES.iter().skip(1))
        .chain(["invalid_object_key", "method_not_allowed"].iter())
    {
        m.record_request(
            &r,
            &RequestRecord {
                outcome: Some(RequestOutcome::Denied),
                rejected: Some(code),
                ..RequestRecord::default()
            },
        );
    }
    let base = "envoy_presign.overrides_refused.origin.o.category.";
    assert_eq!(r.get(&format!("{base}override_not_allowed")), 1);
    assert_eq!(r.get(&format!("{base}invalid_content_type")), 2);
    assert_eq!(r.get(&format!("{base}invalid_content_disposition")), 2);
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.denied"), 7);
}

/// docs/observability.md, metric table: the series no other test reaches.
/// `requests{outcome="refresh"}` with `cache_refreshes`; `cache_hits` for a
/// hit, a hit while another request refreshes and a hit whose refresh
/// failed; `sign_errors{category="signer"|"invalid_uri"}` from the signing
/// errors' own categories; `store_ops{op="get_error"|"set_error"}`.
#[test]
fn refresh_hits_sign_errors_and_store_errors_reach_their_series() {
    use crate::request::decide::FallbackReason;
    use crate::sigv4::presign::SignError;
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    let served = |cache: Outcome| RequestRecord {
        outcome: Some(RequestOutcome::of(Some(cache))),
        cache: Some(cache),
        ..RequestRecord::default()
    };
    m.record_request(&r, &served(Outcome::Refreshed));
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.refresh"), 1);
    assert_eq!(r.get("envoy_presign.cache_refreshes.origin.o"), 1);
    for hit in [Outcome::Hit, Outcome::HitRefreshing, Outcome::RefreshFailed] {
        m.record_request(&r, &served(hit));
    }
    assert_eq!(r.get("envoy_presign.cache_hits.origin.o"), 3);
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.hit"), 3);
    assert_eq!(r.get("envoy_presign.cache_misses.origin.o"), 0);
    for e in [SignError::Signer, SignError::InvalidUri, SignError::Signer] {
        m.record_request(
            &r,
            &RequestRecord {
                outcome: Some(RequestOutcome::Denied),
                sign_error: Some(FallbackReason::SignError(e).category()),
                ..RequestRecord::default()
            },
        );
    }
    assert_eq!(
        r.get("envoy_presign.sign_errors.origin.o.category.signer"),
        2
    );
    assert_eq!(
        r.get("envoy_presign.sign_errors.origin.o.category.invalid_uri"),
        1
    );
    assert_eq!(
        r.get("envoy_presign.sign_errors.origin.o.category.no_credentials"),
        0
    );
    let ops = StoreOps {
        get_err: 1,
        set_err: 2,
        ..StoreOps::default()
    };
    record_ops(&m, &r, ops);
    assert_eq!(store_ops_of(&r), [0, 1, 0, 2]);
}

/// Records a request that made only these store operations.
fn record_ops(m: &OriginMetrics, r: &Recorder, ops: StoreOps) {
    m.record_request(
        r,
        &RequestRecord {
            ops,
            ..RequestRecord::default()
        },
    );
}

/// Origin `o`'s `store_ops` series: get_ok, get_error, set_ok, set_error.
fn store_ops_of(r: &Recorder) -> [u64; 4] {
    ["get_ok", "get_error", "set_ok", "set_error"]
        .map(|op| r.get(&format!("envoy_presign.store_ops.origin.o.op.{op}")))
}

/// docs/operations.md, "When Envoy refuses a hostcall": a refused shared-data read
/// and write count in `store_ops{op="get_error"}` and
/// `{op="set_error"}`, and the request is still served (signed,
/// unstored). From a store that refuses both, through the URL lookup, to
/// the series.
#[test]
fn a_refused_read_and_write_are_counted_and_still_served() {
    use crate::config::Config;
    use crate::request::url_source::{presigned_path, UrlReport};
    use crate::testing::{get_object, host_at, FakeStore};
    let doc = serde_json::json!({
        "credentials": {"source": "inline", "access_key_id": "AKID", "secret_access_key": "s"},
        "origins": [{"name": "o", "match": {"prefix": "/o/"}, "endpoint": "http://h",
                     "bucket": "bkt", "region": "us-east-1"}],
    });
    let c = Config::parse(doc.to_string().as_bytes(), &|_| None).unwrap();
    let store = FakeStore::default();
    store.fail_gets.set(true);
    store.fail_sets.set(true);
    let host = host_at(&store, 1_700_000_000, None);
    let mut report = UrlReport::default();
    let path = presigned_path(&c, &host, &c.origins[0], get_object("k"), &mut report).unwrap();
    assert!(path.starts_with("/bkt/k?X-Amz-"), "{path}");
    assert!(store.data.borrow().is_empty(), "nothing stored");
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    m.record_request(
        &r,
        &RequestRecord {
            outcome: Some(RequestOutcome::of(report.outcome)),
            cache: report.outcome,
            ops: report.ops,
            signed: report.signed,
            ..RequestRecord::default()
        },
    );
    assert_eq!(store_ops_of(&r), [0, 1, 0, 1]);
    assert_eq!(r.get("envoy_presign.urls_signed.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.requests.origin.o.outcome.miss"), 1);
}

/// A cache scan sets the three gauges of its origin, and a later scan
/// replaces (not adds to) the values.
#[test]
fn a_cache_scan_sets_the_origin_gauges() {
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    m.record_cache(&r, 3, 4_096, 64);
    assert_eq!(r.get("envoy_presign.cache_entries.origin.o"), 3);
    assert_eq!(r.get("envoy_presign.cache_bytes.origin.o"), 4_096);
    assert_eq!(r.get("envoy_presign.cache_capacity.origin.o"), 64);
    m.record_cache(&r, 1, 100, 64);
    assert_eq!(r.get("envoy_presign.cache_entries.origin.o"), 1);
    assert_eq!(r.get("envoy_presign.cache_bytes.origin.o"), 100);
    assert!(r
        .names
        .borrow()
        .iter()
        .any(|(k, n)| *k == MetricKind::Gauge && n == "envoy_presign.cache_entries.origin.o"));
}

/// Nothing to count makes no hostcall: a request record of zeros adds to
/// no counter. Corrupt and other-version slots both count as corrupt.
#[test]
fn zero_deltas_make_no_hostcall_and_corrupt_slots_add_up() {
    let r = Recorder::default();
    let m = OriginMetrics::define(&r, "o");
    m.record_request(&r, &RequestRecord::default());
    assert!(r.values.borrow().is_empty(), "{:?}", r.values.borrow());
    let ops = StoreOps {
        corrupt: 1,
        other_version: 2,
        ..StoreOps::default()
    };
    record_ops(&m, &r, ops);
    assert_eq!(r.get("envoy_presign.cache_corrupt.origin.o"), 3);
}

#[test]
fn unmatched_defines_only_what_can_happen() {
    let r = Recorder::default();
    let m = OriginMetrics::define_unmatched(&r);
    let names: Vec<String> = r.names.borrow().iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(
        names,
        [
            "envoy_presign.requests.origin._unmatched.outcome.denied",
            "envoy_presign.requests.origin._unmatched.outcome.bypass",
            "envoy_presign.hostcall_errors.origin._unmatched.call.set_header",
            "envoy_presign.hostcall_errors.origin._unmatched.call.local_reply",
            "envoy_presign.filter_duration_us.origin._unmatched"
        ]
    );
    m.record_request(
        &r,
        &RequestRecord {
            outcome: Some(RequestOutcome::Denied),
            filter_us: Some(3),
            ..RequestRecord::default()
        },
    );
    assert_eq!(
        r.get("envoy_presign.filter_duration_us.origin._unmatched"),
        3
    );
    assert_eq!(
        r.get("envoy_presign.requests.origin._unmatched.outcome.denied"),
        1
    );
}

#[test]
fn outcome_mapping() {
    assert_eq!(
        RequestOutcome::of(Some(Outcome::HitRefreshing)),
        RequestOutcome::Hit
    );
    assert_eq!(
        RequestOutcome::of(Some(Outcome::RefreshFailed)),
        RequestOutcome::Hit
    );
    assert_eq!(
        RequestOutcome::of(Some(Outcome::Refreshed)),
        RequestOutcome::Refresh
    );
    assert_eq!(RequestOutcome::of(None), RequestOutcome::Miss);
}

/// A refused definition makes a no-op handle, never a panic.
#[test]
fn refused_definitions_are_no_ops() {
    struct Refuse;
    impl MetricsBackend for Refuse {
        fn define(&self, _: MetricKind, _: &str) -> Option<u32> {
            None
        }
        fn add(&self, _: u32, _: u64) {
            unreachable!()
        }
        fn record(&self, _: u32, _: u64) {
            unreachable!()
        }
    }
    let m = OriginMetrics::define(&Refuse, "o");
    m.record_request(&Refuse, &RequestRecord::default());
}

/// docs/observability.md, credential metrics: one `credential_refreshes` counter per
/// source of the chain and result (success and each failure category),
/// the `credential_expiry_seconds` and `credential_last_failure` gauges;
/// nothing for a source the chain does not have.
#[test]
fn credential_metrics_define_exactly_the_chains_series() {
    let r = Recorder::default();
    let m = CredentialMetrics::define(&r, &["imds", "assume_role"]);
    let mut want: Vec<(MetricKind, String)> = Vec::new();
    for source in ["imds", "assume_role"] {
        for result in REFRESH_RESULTS {
            want.push((
                MetricKind::Counter,
                format!("envoy_presign.credential_refreshes.source.{source}.result.{result}"),
            ));
        }
    }
    want.push((
        MetricKind::Gauge,
        "envoy_presign.credential_expiry_seconds".into(),
    ));
    want.push((
        MetricKind::Gauge,
        "envoy_presign.credential_last_failure".into(),
    ));
    assert_eq!(*r.names.borrow(), want);
    m.refreshed(&r, "assume_role", "timeout");
    m.refreshed(&r, "assume_role", "timeout");
    m.refreshed(&r, "imds", "success");
    m.refreshed(&r, "imds", "abandoned");
    // Not in the chain, or not a result: nothing.
    m.refreshed(&r, "container", "success");
    m.refreshed(&r, "imds", "bogus");
    let counted: BTreeMap<String, u64> = r.values.borrow().clone();
    let p = "envoy_presign.credential_refreshes.source.";
    assert_eq!(
        counted,
        BTreeMap::from([
            (format!("{p}assume_role.result.timeout"), 2),
            (format!("{p}imds.result.abandoned"), 1),
            (format!("{p}imds.result.success"), 1),
        ])
    );
    m.record_state(&r, 3540, 4);
    assert_eq!(r.get("envoy_presign.credential_expiry_seconds"), 3540);
    assert_eq!(r.get("envoy_presign.credential_last_failure"), 4);
    m.record_state(&r, 0, 0);
    assert_eq!(r.get("envoy_presign.credential_expiry_seconds"), 0);
    assert_eq!(r.get("envoy_presign.credential_last_failure"), 0);
    // A host that refuses definitions: every handle is a no-op.
    CredentialMetrics::default().refreshed(&r, "imds", "success");
    assert_eq!(r.get(&format!("{p}imds.result.success")), 1);
}
