//! The verdict of a health check: healthy, degraded or unhealthy, from
//! configurable thresholds.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::health::HealthReport;
use crate::error::{Result, StreamError, show_duration};

/// The verdict of [`health`](crate::StreamManager::health).
///
/// Serialized in lowercase.
///
/// ```
/// use streams_core::HealthStatus;
/// assert_eq!(serde_json::to_string(&HealthStatus::Degraded).unwrap(), "\"degraded\"");
/// assert_eq!(HealthStatus::Unhealthy.to_string(), "unhealthy");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Everything works and no threshold is exceeded.
    Healthy,
    /// Everything works, but a threshold of [`HealthThresholds`] is
    /// exceeded: work waits longer than it should. Worth a look, not a
    /// restart.
    Degraded,
    /// The backend cannot be reached or refuses writes, or something is
    /// broken (a group missing on a stream or from the registry, retries
    /// that cannot be promoted): messages are not being handled as they
    /// should.
    Unhealthy,
}

impl HealthStatus {
    /// The lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When [`health`](crate::StreamManager::health) reports
/// [`HealthStatus::Degraded`]: each threshold, when set, is a most that is
/// still healthy, per group and stream. `None` turns a check off. Failing
/// writes and an unreachable backend are always unhealthy.
///
/// ```
/// use std::time::Duration;
/// use streams_core::{HealthThresholds, ManagerConfig};
///
/// let thresholds = HealthThresholds::default()
///     .with_max_lag(Some(10_000))
///     .with_max_oldest_pending(Some(Duration::from_secs(300)))
///     .with_max_dlq_growth_per_minute(Some(5.0));
/// let config = ManagerConfig::default().with_health_thresholds(thresholds);
/// assert_eq!(config.health.max_claimable, Some(0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HealthThresholds {
    /// Most entries of a stream not yet delivered to a group. Default: none.
    pub max_lag: Option<u64>,
    /// Greatest age of a group's oldest pending entry on a stream. Default:
    /// none. Serialized as `max_oldest_pending_ms`.
    #[serde(rename = "max_oldest_pending_ms", with = "opt_millis")]
    pub max_oldest_pending: Option<Duration>,
    /// Most entries of a stream waiting to be claimed (idle longer than the
    /// group's `claim_idle`: their consumer died or stalled). Default: 0,
    /// so abandoned work makes the report degraded until it is claimed.
    pub max_claimable: Option<u64>,
    /// Fastest growth of the dead-letter queue, in entries per minute,
    /// measured between this health check and the manager's previous one.
    /// Default: none.
    pub max_dlq_growth_per_minute: Option<f64>,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        Self {
            max_lag: None,
            max_oldest_pending: None,
            max_claimable: Some(0),
            max_dlq_growth_per_minute: None,
        }
    }
}

impl HealthThresholds {
    /// No thresholds: the report is healthy or unhealthy, never degraded.
    pub fn none() -> Self {
        Self {
            max_claimable: None,
            ..Self::default()
        }
    }

    /// Sets [`max_lag`](Self::max_lag).
    #[must_use]
    pub fn with_max_lag(mut self, max: Option<u64>) -> Self {
        self.max_lag = max;
        self
    }

    /// Sets [`max_oldest_pending`](Self::max_oldest_pending).
    #[must_use]
    pub fn with_max_oldest_pending(mut self, max: Option<Duration>) -> Self {
        self.max_oldest_pending = max;
        self
    }

    /// Sets [`max_claimable`](Self::max_claimable).
    #[must_use]
    pub fn with_max_claimable(mut self, max: Option<u64>) -> Self {
        self.max_claimable = max;
        self
    }

    /// Sets [`max_dlq_growth_per_minute`](Self::max_dlq_growth_per_minute).
    #[must_use]
    pub fn with_max_dlq_growth_per_minute(mut self, max: Option<f64>) -> Self {
        self.max_dlq_growth_per_minute = max;
        self
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`StreamError::Config`] for a growth rate that is negative or not finite.
    pub fn validate(&self) -> Result<()> {
        if let Some(rate) = self.max_dlq_growth_per_minute {
            if !rate.is_finite() || rate < 0.0 {
                return Err(StreamError::config(format!(
                    "max_dlq_growth_per_minute must be a finite number of at least 0, not {rate}"
                )));
            }
        }
        Ok(())
    }

    /// What in `report` exceeds a threshold, in words; empty when nothing does.
    pub(crate) fn exceeded(&self, report: &HealthReport) -> Vec<String> {
        let mut found = Vec::new();
        for group in &report.groups {
            let g = &group.group;
            for s in &group.streams {
                let stream = &s.stream;
                if let (Some(max), Some(lag)) = (self.max_lag, s.lag) {
                    if lag > max {
                        found.push(format!(
                            "group `{g}` has {lag} entries of `{stream}` not yet delivered, more than {max}"
                        ));
                    }
                }
                if let (Some(max), Some(age)) = (self.max_oldest_pending, s.oldest_pending_ms) {
                    let age = Duration::from_millis(age);
                    if age > max {
                        found.push(format!(
                            "the oldest pending entry of group `{g}` on `{stream}` is {} old, more than {}",
                            show_duration(age),
                            show_duration(max)
                        ));
                    }
                }
                if self.max_claimable.is_some_and(|max| s.claimable > max) {
                    found.push(format!(
                        "{} entries of `{stream}` have waited longer than {} ms in group `{g}`: run claim_pending_messages",
                        s.claimable, group.claim_idle_ms
                    ));
                }
            }
        }
        if let (Some(max), Some(rate)) =
            (self.max_dlq_growth_per_minute, report.dlq_growth_per_minute)
        {
            if rate > max {
                found.push(format!(
                    "the dead-letter queue grew by {rate:.1} entries per minute since the last health check, more than {max}"
                ));
            }
        }
        found
    }
}

/// The dead-letter queue's length at one health check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DlqSample {
    pub(crate) at: Instant,
    pub(crate) len: u64,
}

/// Entries per minute the queue grew by from `before` to `now` (0 when it
/// shrank); `None` without an earlier sample.
pub(crate) fn growth_per_minute(before: Option<DlqSample>, now: DlqSample) -> Option<f64> {
    let before = before?;
    let minutes = now.at.saturating_duration_since(before.at).as_secs_f64() / 60.0;
    let grown = now.len.saturating_sub(before.len) as f64;
    if grown == 0.0 {
        Some(0.0)
    } else if minutes > 0.0 {
        Some(grown / minutes)
    } else {
        Some(f64::INFINITY)
    }
}

/// `Option<Duration>` as whole milliseconds or null.
mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_serialize_with_units() {
        let t = HealthThresholds::default().with_max_oldest_pending(Some(Duration::from_secs(2)));
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["max_oldest_pending_ms"], 2000);
        assert_eq!(v["max_claimable"], 0);
        assert_eq!(v["max_lag"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<HealthThresholds>(v).unwrap(), t);
        let partial: HealthThresholds = serde_json::from_str(r#"{"max_lag": 5}"#).unwrap();
        assert_eq!(partial.max_lag, Some(5));
        assert_eq!(partial.max_claimable, Some(0));
        assert_eq!(HealthThresholds::none().max_claimable, None);
    }

    #[test]
    fn growth_rates_are_measured_between_samples() {
        let t0 = Instant::now();
        let at = |ms: u64, len: u64| DlqSample {
            at: t0 + Duration::from_millis(ms),
            len,
        };
        assert_eq!(growth_per_minute(None, at(0, 5)), None);
        assert_eq!(
            growth_per_minute(Some(at(0, 5)), at(30_000, 15)),
            Some(20.0)
        );
        assert_eq!(growth_per_minute(Some(at(0, 15)), at(60_000, 5)), Some(0.0));
        assert_eq!(growth_per_minute(Some(at(0, 5)), at(0, 5)), Some(0.0));
        assert_eq!(
            growth_per_minute(Some(at(10, 5)), at(10, 6)),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn rates_must_be_finite_and_not_negative() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let t = HealthThresholds::default().with_max_dlq_growth_per_minute(Some(bad));
            assert!(t.validate().is_err(), "{bad}");
        }
        assert!(HealthThresholds::default().validate().is_ok());
    }
}
