//! The dashboard's short memory: one point per sample for the last
//! minutes, and the rates derived from consecutive points.
//!
//! Every quantity kept is a counter that only grows while nothing is
//! deleted (entries a group has handed out, retries ever scheduled, dead
//! letters of a group), so a rate is the growth between two points divided
//! by the time between them. A counter that went down (a replay took dead
//! letters out, a stream was trimmed) counts as no growth for that
//! interval. The history starts when the dashboard does and is lost when it
//! stops; nothing is written to the server.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

/// A stream at one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamPoint {
    /// Entries in it.
    pub(crate) length: u64,
    /// Entries it was ever given (a group's entries read plus its lag), when
    /// a group on it tells; unlike the length, trims do not lower it.
    pub(crate) added: Option<u64>,
}

/// A group on one stream at one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupPoint {
    /// Entries of the stream the group has finished with: handed out and
    /// no longer pending (acknowledged, retried or dead-lettered).
    pub(crate) done: Option<u64>,
    /// Retries the group ever scheduled for the stream, as far as they
    /// can still be seen: scheduled now, plus promoted to the ready stream
    /// (read there, or waiting to be).
    pub(crate) retried: Option<u64>,
}

/// Everything sampled at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Point {
    /// When, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    /// By stream name.
    pub(crate) streams: BTreeMap<String, StreamPoint>,
    /// By (group, stream).
    pub(crate) groups: BTreeMap<(String, String), GroupPoint>,
    /// Dead letters by the group that gave up on them.
    pub(crate) dlq_by_group: BTreeMap<String, u64>,
    /// Dead letters in all.
    pub(crate) dlq_total: u64,
}

/// A chart's data: times (seconds since the Unix epoch) and, for each
/// series, one rate per minute for each time (`null` where unknown).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Series {
    /// The end of each interval.
    pub(crate) t: Vec<f64>,
    /// The series, by label.
    pub(crate) series: Vec<Line>,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Line {
    /// What it shows.
    pub(crate) label: String,
    /// Per minute, one per time of the chart.
    pub(crate) values: Vec<Option<f64>>,
}

/// How one counter grew from one point to the next, if it is known at both.
pub(crate) type Growth<'a> = Box<dyn Fn(&Point, &Point) -> Option<u64> + Send + Sync + 'a>;

/// The growth of a counter known at both points; a fall counts as none.
pub(crate) fn grew(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// Entries added to `stream`: by what groups tell when both points know it,
/// else by its length.
pub(crate) fn stream_in(stream: &str) -> Growth<'_> {
    Box::new(move |a, b| {
        let (a, b) = (a.streams.get(stream)?, b.streams.get(stream)?);
        match (a.added, b.added) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => Some(b.length.saturating_sub(a.length)),
        }
    })
}

/// Entries `group` finished with on `stream`.
pub(crate) fn group_out<'a>(group: &'a str, stream: &'a str) -> Growth<'a> {
    Box::new(move |a, b| {
        let key = (group.to_owned(), stream.to_owned());
        grew(a.groups.get(&key)?.done, b.groups.get(&key)?.done)
    })
}

/// Retries `group` scheduled on `stream`.
pub(crate) fn group_retries<'a>(group: &'a str, stream: &'a str) -> Growth<'a> {
    Box::new(move |a, b| {
        let key = (group.to_owned(), stream.to_owned());
        grew(a.groups.get(&key)?.retried, b.groups.get(&key)?.retried)
    })
}

/// Entries `group` dead-lettered.
pub(crate) fn group_dlq(group: &str) -> Growth<'_> {
    Box::new(move |a, b| {
        let count = |p: &Point| p.dlq_by_group.get(group).copied().unwrap_or(0);
        Some(count(b).saturating_sub(count(a)))
    })
}

/// The sum of several growths, known when any of them is.
pub(crate) fn sum(parts: Vec<Growth<'_>>) -> Growth<'_> {
    Box::new(move |a, b| {
        parts
            .iter()
            .filter_map(|f| f(a, b))
            .fold(None, |acc, n| Some(acc.unwrap_or(0) + n))
    })
}

/// The points of the last minutes.
#[derive(Debug)]
pub(crate) struct History {
    points: VecDeque<Point>,
    keep: Duration,
}

impl History {
    /// An empty history that keeps `keep` of points.
    pub(crate) fn new(keep: Duration) -> Self {
        Self {
            points: VecDeque::new(),
            keep,
        }
    }

    /// Adds the newest point and forgets those older than the span kept.
    pub(crate) fn push(&mut self, point: Point) {
        let keep = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
        let oldest = point.at_ms.saturating_sub(keep);
        self.points.push_back(point);
        while self.points.front().is_some_and(|p| p.at_ms < oldest) {
            self.points.pop_front();
        }
    }

    /// When the first point kept was taken (ms since the epoch).
    pub(crate) fn since_ms(&self) -> Option<u64> {
        self.points.front().map(|p| p.at_ms)
    }

    /// Per minute, over the points of the last `window`: the growths
    /// between consecutive points, added up, over the time they cover.
    /// `None` with fewer than two points, or when the growth is never known.
    pub(crate) fn rate(&self, growth: &Growth<'_>, window: Duration) -> Option<f64> {
        let newest = self.points.back()?.at_ms;
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let from = newest.saturating_sub(window);
        let recent: Vec<&Point> = self.points.iter().filter(|p| p.at_ms >= from).collect();
        let (mut total, mut covered_ms, mut known) = (0u64, 0u64, false);
        for pair in recent.windows(2) {
            if let Some(n) = growth(pair[0], pair[1]) {
                known = true;
                total += n;
                covered_ms += pair[1].at_ms.saturating_sub(pair[0].at_ms);
            }
        }
        if !known || covered_ms == 0 {
            return None;
        }
        Some(total as f64 * 60_000.0 / covered_ms as f64)
    }

    /// A chart of the given growths, one line each, per minute.
    pub(crate) fn chart(&self, lines: Vec<(String, Growth<'_>)>) -> Series {
        let pairs: Vec<(&Point, &Point)> =
            self.points.iter().zip(self.points.iter().skip(1)).collect();
        let t = pairs.iter().map(|(_, b)| b.at_ms as f64 / 1000.0).collect();
        let series = lines
            .into_iter()
            .map(|(label, growth)| Line {
                label,
                values: pairs
                    .iter()
                    .map(|(a, b)| {
                        let ms = b.at_ms.saturating_sub(a.at_ms);
                        let n = growth(a, b)?;
                        (ms > 0).then(|| n as f64 * 60_000.0 / ms as f64)
                    })
                    .collect(),
            })
            .collect();
        Series { t, series }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64, length: u64, done: Option<u64>, dlq: u64) -> Point {
        let mut p = Point {
            at_ms,
            dlq_total: dlq,
            ..Point::default()
        };
        p.streams.insert(
            "s".to_owned(),
            StreamPoint {
                length,
                added: None,
            },
        );
        p.groups.insert(
            ("g".to_owned(), "s".to_owned()),
            GroupPoint {
                done,
                retried: Some(0),
            },
        );
        p.dlq_by_group.insert("g".to_owned(), dlq);
        p
    }

    #[test]
    fn rates_are_growth_per_minute() {
        let mut h = History::new(Duration::from_secs(600));
        h.push(point(0, 10, Some(0), 0));
        h.push(point(30_000, 40, Some(6), 1));
        h.push(point(60_000, 70, Some(12), 3));
        let minute = Duration::from_secs(60);
        assert_eq!(h.rate(&stream_in("s"), minute), Some(60.0));
        assert_eq!(h.rate(&group_out("g", "s"), minute), Some(12.0));
        assert_eq!(h.rate(&group_dlq("g"), minute), Some(3.0));
        assert_eq!(h.rate(&group_retries("g", "s"), minute), Some(0.0));
        // The last 30 s only.
        assert_eq!(h.rate(&stream_in("s"), Duration::from_secs(30)), Some(60.0));
        assert_eq!(h.rate(&stream_in("other"), minute), None);
    }

    #[test]
    fn falls_count_as_no_growth_and_unknowns_are_left_out() {
        let mut h = History::new(Duration::from_secs(600));
        h.push(point(0, 10, None, 5));
        h.push(point(60_000, 4, None, 1));
        let minute = Duration::from_secs(60);
        assert_eq!(h.rate(&stream_in("s"), minute), Some(0.0));
        assert_eq!(h.rate(&group_dlq("g"), minute), Some(0.0));
        assert_eq!(h.rate(&group_out("g", "s"), minute), None);
        let chart = h.chart(vec![("out".to_owned(), group_out("g", "s"))]);
        assert_eq!(chart.t, vec![60.0]);
        assert_eq!(chart.series[0].values, vec![None]);
    }

    #[test]
    fn old_points_are_forgotten() {
        let mut h = History::new(Duration::from_secs(60));
        for i in 0..10 {
            h.push(point(i * 30_000, i, Some(i), 0));
        }
        assert_eq!(h.points.len(), 3);
        assert_eq!(h.since_ms(), Some(210_000));
        let chart = h.chart(vec![("in".to_owned(), stream_in("s"))]);
        assert_eq!(chart.t.len(), 2);
        assert_eq!(chart.series[0].values, vec![Some(2.0), Some(2.0)]);
    }

    #[test]
    fn sums_are_known_when_a_part_is() {
        let mut a = point(0, 0, Some(1), 0);
        let mut b = point(60_000, 0, Some(4), 0);
        for p in [&mut a, &mut b] {
            p.groups
                .insert(("g".to_owned(), "t".to_owned()), GroupPoint::default());
        }
        let both = sum(vec![group_out("g", "s"), group_out("g", "t")]);
        assert_eq!(both(&a, &b), Some(3));
        let none = sum(vec![group_out("g", "t")]);
        assert_eq!(none(&a, &b), None);
    }
}
