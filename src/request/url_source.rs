//! Where a request's presigned path comes from: the shared cache (when
//! enabled) or a fresh signature. Pure: the store and the time are arguments.

use std::time::{Duration, SystemTime};

use crate::cache::{
    capped_expiry_ms, resolve, slot_key, slot_of, Lookup, Outcome, Store, StoreOps,
};
use crate::clock::unix_ms;
use crate::config::credentials::stops_signing_ms;
use crate::config::{Config, Origin};
use crate::request::decide::FallbackReason;
use crate::sigv4::canonical::format_query_into;
use crate::sigv4::presign::{object_path_into, presign, Method, Signer};

/// What producing one URL did, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlReport {
    /// How the cache answered; `None` when the cache is disabled (always signed).
    pub outcome: Option<Outcome>,
    /// Store operations made.
    pub ops: StoreOps,
    /// URLs signed successfully (the plan's "AWS API call volume").
    pub signed: u32,
    /// The last signing failure, including one during a refresh that was
    /// answered with the still-valid entry.
    pub sign_error: Option<FallbackReason>,
    /// Microseconds spent computing signatures (the plan's URL generation
    /// time), when the signing was timed (`Host::clock`).
    pub sign_us: Option<u64>,
    /// When (Unix ms) the URL stops being valid, when one was produced: what a
    /// redirect's `max-age` is computed from.
    pub expires_at_ms: Option<u64>,
    /// Until when (Unix ms) the URL is fresh — servable without consulting the
    /// shared cache again; `None` when it is already due for refresh.
    pub fresh_until_ms: Option<u64>,
}

/// The host facilities a URL lookup uses: the shared store and the time.
pub struct Host<'a, S: Store + ?Sized> {
    /// Shared data.
    pub store: &'a S,
    /// The time the lookup runs at (the request's arrival).
    pub now: SystemTime,
    /// Live wall clock to time the signing itself, for the requests whose
    /// latencies are sampled; `None` saves its two clock reads.
    pub clock: Option<&'a dyn Fn() -> SystemTime>,
    /// Rotating credentials as this worker holds them; `None`: the
    /// configuration's static keys (`Config::signer`).
    pub keys: Option<Keys<'a>>,
}

/// A worker's rotating credentials at the time of a request.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// The signer of the credentials held, if any were obtained.
    pub signer: Option<&'a Signer>,
    /// URLs end this long before the credentials do.
    pub margin_ms: u64,
    /// What a refused request is told to wait (the next refresh attempt).
    pub retry_after_secs: u32,
}

impl Keys<'_> {
    /// The signer and the last instant (Unix ms) a URL it signs may be
    /// valid, or why none may be signed now: the credentials are missing, or
    /// would leave a URL less than `min_remaining_ms` of life.
    fn usable(&self, now_ms: u64, min_remaining_ms: u64) -> Result<(&Signer, u64), FallbackReason> {
        let unavailable = FallbackReason::CredentialsUnavailable {
            retry_after_secs: self.retry_after_secs,
        };
        let signer = self.signer.ok_or(unavailable)?;
        let not_after = match signer.expires_at_ms() {
            Some(e) => e.saturating_sub(self.margin_ms),
            None => u64::MAX,
        };
        // The one rule of `config::credentials::stops_signing_ms`: the margin, what
        // a URL must keep left, and a whole second of URL life.
        let stops = stops_signing_ms(self.margin_ms, min_remaining_ms);
        if signer
            .expires_at_ms()
            .is_some_and(|e| e < now_ms.saturating_add(stops))
        {
            return Err(unavailable);
        }
        Ok((signer, not_after))
    }
}

/// The object a request asks for.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRequest<'a> {
    /// GET or HEAD.
    pub method: Method,
    /// Decoded object key.
    pub key: &'a str,
    /// Allow-listed query parameters, decoded.
    pub query: &'a [(String, String)],
}

/// The cache identity of a request: everything that changes its URL. The
/// origin part is pre-computed; credentials, method, key and query are added.
pub fn cache_identity(
    origin: &Origin,
    signer: &Signer,
    method: Method,
    key: &str,
    query: &[(String, String)],
) -> String {
    let mut id = String::with_capacity(
        origin.identity_prefix.len()
            + signer.fingerprint().len()
            + 16
            + key.len() * 3
            + query.len() * 32,
    );
    id.push_str(&origin.identity_prefix);
    id.push('\n');
    id.push_str(signer.fingerprint());
    id.push('\n');
    id.push_str(method.as_str());
    id.push('\n');
    object_path_into(&mut id, &origin.target(), key);
    id.push('?');
    format_query_into(&mut id, query);
    id
}

/// The presigned `:path` for one object request, now.
pub fn presigned_path<S: Store + ?Sized>(
    config: &Config,
    host: &Host<'_, S>,
    origin: &Origin,
    req: ObjectRequest<'_>,
    report: &mut UrlReport,
) -> Result<String, FallbackReason> {
    let now = host.now;
    let keys = match (&host.keys, config.signer.as_ref()) {
        (Some(k), _) => k.usable(unix_ms(now), origin.policy.min_remaining_ms),
        (None, Ok(signer)) => Ok((signer, u64::MAX)),
        (None, Err(_)) => Err(FallbackReason::NoCredentials),
    };
    let (signer, not_after_ms) = match keys {
        Ok(k) => k,
        Err(reason) => {
            report.sign_error = Some(reason);
            return Err(reason);
        }
    };
    let mut sign_us = 0u64;
    let mut timed = 0u32;
    let mut sign_at = |at: SystemTime, expires: Duration| {
        let start = host.clock.map(|clock| clock());
        let r = presign(
            &origin.target(),
            req.method,
            req.key,
            req.query,
            signer,
            at,
            expires,
        )
        .map(|p| p.path)
        .map_err(FallbackReason::SignError);
        if let (Some(clock), Some(start)) = (host.clock, start) {
            let took = clock().duration_since(start).unwrap_or_default();
            sign_us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            timed += 1;
        }
        match &r {
            Ok(_) => report.signed += 1,
            Err(e) => report.sign_error = Some(*e),
        }
        r
    };
    let result = if config.cache.enabled {
        let identity = cache_identity(origin, signer, req.method, req.key, req.query);
        let slot = slot_key(slot_of(&identity, config.cache.max_entries));
        let lookup = Lookup {
            slot_key: &slot,
            identity: &identity,
            policy: &origin.policy,
            now_ms: unix_ms(now),
            not_after_ms,
        };
        match resolve(host.store, lookup, &mut sign_at) {
            Ok(r) => {
                report.outcome = Some(r.outcome);
                report.ops = r.ops;
                let fresh_until = r
                    .expires_at_ms
                    .saturating_sub(origin.policy.refresh_before_ms);
                report.fresh_until_ms = (fresh_until > unix_ms(now)).then_some(fresh_until);
                report.expires_at_ms = Some(r.expires_at_ms);
                Ok(r.path)
            }
            Err((e, ops)) => {
                report.ops = ops;
                Err(e)
            }
        }
    } else {
        let at_ms = origin.policy.signing_time_ms(unix_ms(now));
        let expires_in_ms = capped_expiry_ms(origin.policy.expires_in_ms, at_ms, not_after_ms);
        let r = sign_at(
            SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            Duration::from_millis(expires_in_ms),
        );
        if r.is_ok() {
            report.expires_at_ms = Some(at_ms.saturating_add(expires_in_ms));
        }
        r
    };
    report.sign_us = (timed > 0).then_some(sign_us);
    result
}

#[cfg(test)]
#[path = "url_source_tests.rs"]
mod tests;
