//! The instant a rotation callback runs at, converted once. The glue reads
//! the host's clock once per callback; the refresher turns that reading into
//! a [`Now`] at its entry points and hands it down, so every decision of one
//! callback compares the same milliseconds and nothing converts twice.

use std::time::SystemTime;

use crate::clock::unix_ms;

/// One callback's time: the wall-clock reading (SigV4 signs with it) and its
/// Unix milliseconds (everything else compares those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The host's reading, as given.
    pub time: SystemTime,
    /// The same instant in Unix milliseconds (`clock::unix_ms`).
    pub ms: u64,
}

impl Now {
    /// Converts `time` once, for a whole callback.
    pub fn at(time: SystemTime) -> Self {
        Self {
            time,
            ms: unix_ms(time),
        }
    }
}
