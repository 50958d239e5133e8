//! Stream ids (`<ms>-<seq>`), their parsing as Redis parses them, and the
//! two clocks of the model.

use std::fmt;
use std::ops::Bound;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use streams_core::EntryId;

use crate::error::Error;

/// A stream entry id. Ordered as Redis orders them: by `ms`, then `seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StreamId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Which end of an interval an id without `-seq` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// `ms` means `ms-0`.
    Start,
    /// `ms` means `ms-<max>`.
    End,
}

impl StreamId {
    pub(crate) const MIN: Self = Self { ms: 0, seq: 0 };
    pub(crate) const MAX: Self = Self {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub(crate) const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The id `XADD *` gives after `last` at wall time `now_ms`. Ids never go
    /// back, even when the clock does; `None` once every id is used.
    pub(crate) fn next_after(last: Self, now_ms: u64) -> Option<Self> {
        if now_ms > last.ms {
            Some(Self::new(now_ms, 0))
        } else {
            last.successor()
        }
    }

    pub(crate) fn successor(self) -> Option<Self> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(Self::new(self.ms, seq)),
            None => self.ms.checked_add(1).map(|ms| Self::new(ms, 0)),
        }
    }

    pub(crate) fn predecessor(self) -> Option<Self> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(Self::new(self.ms, seq)),
            None => self.ms.checked_sub(1).map(|ms| Self::new(ms, u64::MAX)),
        }
    }

    /// An id as an argument: `ms-seq`, or `ms` alone (completed for `end`).
    pub(crate) fn parse(s: &str, end: End) -> Result<Self, Error> {
        let invalid = || Error::InvalidId { id: s.to_owned() };
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, Some(seq)),
            None => (s, None),
        };
        let ms = parse_u64(ms).ok_or_else(invalid)?;
        let seq = match (seq, end) {
            (Some(seq), _) => parse_u64(seq).ok_or_else(invalid)?,
            (None, End::Start) => 0,
            (None, End::End) => u64::MAX,
        };
        Ok(Self::new(ms, seq))
    }

    /// The inclusive interval of two bounds over ids, `None` when it is empty.
    pub(crate) fn interval(
        start: &Bound<EntryId>,
        end: &Bound<EntryId>,
    ) -> Result<Option<(Self, Self)>, Error> {
        let lo = match start {
            Bound::Unbounded => Some(Self::MIN),
            Bound::Included(id) => Some(Self::parse(id.as_str(), End::Start)?),
            Bound::Excluded(id) => Self::parse(id.as_str(), End::End)?.successor(),
        };
        let hi = match end {
            Bound::Unbounded => Some(Self::MAX),
            Bound::Included(id) => Some(Self::parse(id.as_str(), End::End)?),
            Bound::Excluded(id) => Self::parse(id.as_str(), End::Start)?.predecessor(),
        };
        Ok(match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
            _ => None,
        })
    }

    /// An entry id given back by a caller.
    pub(crate) fn of(id: &EntryId) -> Result<Self, Error> {
        Self::parse(id.as_str(), End::Start)
    }

    /// The id as the text callers see, `<ms>-<seq>`, written straight into
    /// a string of its exact size (no formatting machinery: every add and
    /// every entry read makes one).
    pub(crate) fn to_entry_id(self) -> EntryId {
        fn put(digits: &mut [u8; 41], at: &mut usize, mut n: u64) {
            loop {
                *at -= 1;
                digits[*at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    return;
                }
            }
        }
        let mut digits = [0u8; 41];
        let mut at = digits.len();
        put(&mut digits, &mut at, self.seq);
        at -= 1;
        digits[at] = b'-';
        put(&mut digits, &mut at, self.ms);
        match std::str::from_utf8(&digits[at..]) {
            Ok(text) => EntryId::from(text),
            Err(_) => EntryId::from(self.to_string()),
        }
    }
}

/// Decimal digits only, as Redis' `string2ull` takes them; `None` for
/// anything else or a value beyond 64 bits.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Milliseconds since the Unix epoch: what ids are made of.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A point on the monotonic clock, in nanoseconds from a process-wide origin.
///
/// Delivery times, idle times and due times use it, so a wall clock that
/// jumps cannot make entries claimable early. It is signed because an idle
/// time set by `set_idle` may reach before the origin (a handed-back entry
/// gets years of idleness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Tick(i64);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Tick {
    pub(crate) fn now() -> Self {
        Self(nanos(origin().elapsed()))
    }

    pub(crate) fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(nanos(d)))
    }

    pub(crate) fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(nanos(d)))
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub(crate) fn since(self, earlier: Self) -> Duration {
        let d = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_nanos(u64::try_from(d).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_id_is_strictly_increasing() {
        let a = StreamId::next_after(StreamId::MIN, 100).unwrap();
        assert_eq!(a, StreamId::new(100, 0));
        // Same millisecond: the sequence grows.
        let b = StreamId::next_after(a, 100).unwrap();
        assert_eq!(b, StreamId::new(100, 1));
        // The clock went back: keep the last millisecond.
        let c = StreamId::next_after(b, 50).unwrap();
        assert_eq!(c, StreamId::new(100, 2));
        let d = StreamId::next_after(c, 101).unwrap();
        assert_eq!(d, StreamId::new(101, 0));
        let full = StreamId::new(7, u64::MAX);
        assert_eq!(StreamId::next_after(full, 7), Some(StreamId::new(8, 0)));
        assert_eq!(StreamId::next_after(StreamId::MAX, 0), None);
    }

    #[test]
    fn formats_as_redis_does() {
        for id in [
            StreamId::MIN,
            StreamId::new(1_700_000_000_000, 0),
            StreamId::new(5, 123),
            StreamId::MAX,
        ] {
            assert_eq!(id.to_entry_id().as_str(), id.to_string());
            assert_eq!(StreamId::of(&id.to_entry_id()).unwrap(), id);
        }
    }

    #[test]
    fn parses_like_redis() {
        assert_eq!(
            StreamId::parse("5-3", End::Start).unwrap(),
            StreamId::new(5, 3)
        );
        assert_eq!(
            StreamId::parse("5", End::Start).unwrap(),
            StreamId::new(5, 0)
        );
        assert_eq!(
            StreamId::parse("5", End::End).unwrap(),
            StreamId::new(5, u64::MAX)
        );
        assert_eq!(StreamId::parse("0", End::Start).unwrap(), StreamId::MIN);
        for bad in [
            "",
            "-",
            "a-1",
            "1-",
            "1-b",
            "+1",
            " 1",
            "1-2-3",
            "99999999999999999999",
        ] {
            assert!(StreamId::parse(bad, End::Start).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bounds_of_entry_ids() {
        let id = |s: &str| EntryId::from(s);
        assert_eq!(
            StreamId::interval(&Bound::Unbounded, &Bound::Unbounded).unwrap(),
            Some((StreamId::MIN, StreamId::MAX))
        );
        assert_eq!(
            StreamId::interval(&Bound::Excluded(id("5-0")), &Bound::Excluded(id("6-0"))).unwrap(),
            Some((StreamId::new(5, 1), StreamId::new(5, u64::MAX)))
        );
        assert_eq!(
            StreamId::interval(&Bound::Included(id("5-3")), &Bound::Included(id("5-3"))).unwrap(),
            Some((StreamId::new(5, 3), StreamId::new(5, 3)))
        );
        assert_eq!(
            StreamId::interval(&Bound::Included(id("6")), &Bound::Included(id("5"))).unwrap(),
            None
        );
        assert!(StreamId::interval(&Bound::Included(id("x")), &Bound::Unbounded).is_err());
    }

    #[test]
    fn ticks_saturate() {
        let now = Tick::now();
        let long_ago = now.minus(Duration::from_secs(10 * 365 * 86_400));
        assert!(now.since(long_ago) >= Duration::from_secs(10 * 365 * 86_400));
        assert_eq!(long_ago.since(now), Duration::ZERO);
        let far = now.plus(Duration::MAX);
        assert!(far > now);
        assert_eq!(now.minus(Duration::MAX).since(now), Duration::ZERO);
    }
}
