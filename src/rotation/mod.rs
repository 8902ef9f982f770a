//! Rotating credentials: the calls that fetch them (IMDS, ECS/EKS container
//! endpoints, STS), the parsers of their replies, and the refresher that decides
//! when to fetch and shares the result between workers.
//!
//! Layering, bottom up: `now` (one callback's time) and `parse` (answers to
//! credentials) depend on nothing here; `failure` (why a refresh failed)
//! names parse errors; `fetch` (one source's calls) uses both; `refresh`
//! (who fetches, and sharing the result) drives `fetch`. Nothing here uses
//! the metrics, the request path or the glue: they use this.

pub mod failure;
pub mod fetch;
pub mod now;
pub mod parse;
pub mod refresh;
