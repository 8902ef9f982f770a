//! Rotating credentials: the calls that fetch them (IMDS, ECS/EKS container
//! endpoints, STS), the parsers of their replies, and the refresher that decides
//! when to fetch and shares the result between workers.

pub mod failure;
pub mod fetch;
pub mod now;
pub mod parse;
pub mod refresh;
