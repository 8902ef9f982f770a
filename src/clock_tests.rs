use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// A host clock that counts its reads and answers `ms` plus the reads so far.
fn counting(reads: &Cell<u64>, ms: u64) -> impl Fn() -> SystemTime + '_ {
    move || {
        reads.set(reads.get() + 1);
        at(ms + reads.get())
    }
}

#[test]
fn unix_ms_counts_from_the_epoch_and_floors_earlier_times_at_zero() {
    assert_eq!(unix_ms(at(1_764_979_200_123)), 1_764_979_200_123);
    assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
}

#[test]
fn a_deadline_beyond_the_margin_needs_no_clock_read() {
    let reads = Cell::new(0);
    let read = counting(&reads, 0);
    let clock = RequestClock::new(Some(1_000), None, &read);
    assert!(clock.surely_before(1_000 + TICK_CLOCK_MARGIN_MS + 1));
    // At the margin itself, and within it, the tick clock cannot tell.
    assert!(!clock.surely_before(1_000 + TICK_CLOCK_MARGIN_MS));
    assert!(!clock.surely_before(1_500));
    assert!(!clock.surely_before(0));
    assert_eq!(reads.get(), 0);
}

#[test]
fn without_ticks_nothing_is_sure() {
    let read = || at(0);
    let clock = RequestClock::new(None, None, &read);
    assert!(!clock.surely_before(u64::MAX));
    // A tick clock near the end of time does not wrap into "sure".
    let clock = RequestClock::new(Some(u64::MAX - 5), None, &read);
    assert!(!clock.surely_before(u64::MAX));
}

#[test]
fn the_hosts_clock_is_read_once_per_request() {
    let reads = Cell::new(0);
    let read = counting(&reads, 42_000);
    let mut clock = RequestClock::new(Some(1), None, &read);
    assert_eq!(clock.read_so_far(), None);
    assert_eq!(clock.exact_ms(), 42_001);
    assert_eq!(clock.exact(), at(42_001));
    assert_eq!(clock.read_so_far(), Some(at(42_001)));
    assert_eq!(reads.get(), 1);
}

#[test]
fn a_time_already_read_is_not_read_again() {
    let reads = Cell::new(0);
    let read = counting(&reads, 9);
    let mut clock = RequestClock::new(None, Some(at(7)), &read);
    assert_eq!(clock.exact_ms(), 7);
    assert_eq!(reads.get(), 0);
}
