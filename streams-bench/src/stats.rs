//! Medians and percentiles.

use serde::{Deserialize, Serialize};

/// A figure measured over several runs: the median, and every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The median of the runs.
    pub median: f64,
    /// Each run, in order.
    pub runs: Vec<f64>,
}

impl Figure {
    /// The figure of some runs; `None` without any.
    pub fn of(runs: Vec<f64>) -> Option<Self> {
        Some(Self {
            median: median(&runs)?,
            runs,
        })
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The `p`th percentile (nearest rank) of some latencies, after dropping
/// the first `warmup` fraction of them (connections and caches warming).
pub fn percentile(latencies: &[u64], p: f64, warmup: f64) -> Option<f64> {
    let skip = (latencies.len() as f64 * warmup) as usize;
    let mut v: Vec<u64> = latencies.iter().skip(skip).copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1] as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let l: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&l, 50.0, 0.0), Some(50.0));
        assert_eq!(percentile(&l, 99.0, 0.0), Some(99.0));
        assert_eq!(percentile(&l, 100.0, 0.0), Some(100.0));
        assert_eq!(percentile(&l, 50.0, 0.5), Some(75.0));
        assert_eq!(percentile(&[], 50.0, 0.0), None);
    }
}
