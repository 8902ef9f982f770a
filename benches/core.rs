//! Native cost of the pure core on the two request paths, without Envoy or
//! Wasm: a cache hit (decide + identity + slot read + decode) and a signature.
//! `make bench` prints it beside the in-Envoy figures; run alone with
//! `cargo bench --bench core`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use envoy_presign::cache::{Store, StoreError};
use envoy_presign::config::{Config, Origin};
use envoy_presign::request::decide::{decide, RequestHead};
use envoy_presign::request::url_source::{presigned_path, Host, ObjectRequest, UrlReport};
use envoy_presign::sigv4::presign::{presign, Method};

/// An in-memory store standing in for Envoy's shared data.
#[derive(Default)]
struct MapStore(RefCell<HashMap<String, Vec<u8>>>);

impl Store for MapStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok((self.0.borrow().get(key).cloned(), Some(1)))
    }
    fn set(&self, key: &str, value: &[u8], _: Option<u32>) -> Result<(), StoreError> {
        self.0.borrow_mut().insert(key.to_string(), value.to_vec());
        Ok(())
    }
}

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn main() {
    let doc = br#"{"credentials":{"source":"inline","access_key_id":"AKIDEXAMPLE","secret_access_key":"s"},
      "origins":[{"name":"media","match":{"prefix":"/media/"},"endpoint":"http://127.0.0.1:9000",
                  "bucket":"media","region":"us-east-1"}]}"#;
    let Ok(config) = Config::parse(doc, &|_| None) else {
        eprintln!("benchmark config rejected");
        return;
    };
    let store = MapStore::default();
    let now = SystemTime::now();
    let host = Host {
        store: &store,
        now,
        clock: Some(&SystemTime::now),
        keys: None,
    };
    let head = RequestHead {
        method: "GET",
        authority: "localhost:10000",
        path: b"/media/video/clip-0001.mp4",
    };
    let hit = per_op(200_000, || {
        let mut report = UrlReport::default();
        let mut sign = |o: &Origin, method, key: &str, query: &[(String, String)]| {
            presigned_path(
                &config,
                &host,
                o,
                ObjectRequest { method, key, query },
                &mut report,
            )
        };
        black_box(decide(&config, head, &mut sign));
    });
    let (Some(origin), Ok(signer)) = (config.origins.first(), config.signer.as_ref()) else {
        return;
    };
    let sign = per_op(100_000, || {
        black_box(
            presign(
                &origin.target(),
                Method::Get,
                "video/clip-0001.mp4",
                &[],
                signer,
                now,
                Duration::from_secs(3600),
            )
            .ok(),
        );
    });
    println!("native pure core: cache hit {hit:.2} µs/request, signing {sign:.2} µs/request");
}
