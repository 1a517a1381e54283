//! Load statistics over per-replica request counts.

use serde::Serialize;

/// How evenly requests spread over replicas.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub replicas: usize,
    pub total: u64,
    pub mean: f64,
    pub min: u64,
    pub max: u64,
    /// Population standard deviation.
    pub std_dev: f64,
    /// Coefficient of variation: std_dev / mean (0 = perfectly even).
    pub cv: f64,
    /// Busiest replica's load over the mean (1 = perfectly even).
    pub max_over_mean: f64,
}

impl Spread {
    /// The spread of `counts` (one per replica; replicas that got nothing
    /// must be included as 0). `None` for no replicas.
    pub fn of(counts: &[u64]) -> Option<Spread> {
        if counts.is_empty() {
            return None;
        }
        let n = counts.len() as f64;
        let total: u64 = counts.iter().sum();
        let mean = total as f64 / n;
        let var = counts
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let std_dev = var.sqrt();
        let min = counts.iter().copied().min().unwrap_or(0);
        let max = counts.iter().copied().max().unwrap_or(0);
        let (cv, max_over_mean) = if mean > 0.0 {
            (std_dev / mean, max as f64 / mean)
        } else {
            (0.0, 0.0)
        };
        Some(Spread {
            replicas: counts.len(),
            total,
            mean,
            min,
            max,
            std_dev,
            cv,
            max_over_mean,
        })
    }
}

/// Percentage of `part` in `whole` (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The `p`-th percentile (0 < p <= 100) of `values` by the nearest-rank
/// method: the smallest value with at least p % of the values at or below
/// it. `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Bucket event times (ms since a start) into `width_ms` buckets from
/// `from_ms` (inclusive) to `to_ms` (exclusive); returns the count per bucket.
pub fn buckets(times_ms: &[f64], from_ms: f64, to_ms: f64, width_ms: f64) -> Vec<u64> {
    let n = ((to_ms - from_ms) / width_ms).ceil().max(0.0) as usize;
    let mut out = vec![0u64; n];
    for &t in times_ms {
        if t >= from_ms && t < to_ms {
            let i = ((t - from_ms) / width_ms) as usize;
            if let Some(slot) = out.get_mut(i) {
                *slot += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_load_has_zero_cv_and_unit_max_over_mean() {
        let s = Spread::of(&[100, 100, 100, 100]).expect("replicas");
        assert_eq!((s.total, s.min, s.max), (400, 100, 100));
        assert_eq!(s.mean, 100.0);
        assert_eq!(s.cv, 0.0);
        assert_eq!(s.max_over_mean, 1.0);
    }

    #[test]
    fn the_spec_ring_skew() {
        // The spec ring's exact shares over every 6-digit id.
        let s = Spread::of(&[759_374, 42_187, 98_439]).expect("replicas");
        assert_eq!(s.total, 900_000);
        assert!((s.mean - 300_000.0).abs() < 1e-9);
        // population std: sqrt(((459374)^2 + (257813)^2 + (201561)^2) / 3)
        let expected_std =
            ((459_374f64.powi(2) + 257_813f64.powi(2) + 201_561f64.powi(2)) / 3.0).sqrt();
        assert!((s.std_dev - expected_std).abs() < 1e-6);
        assert!((s.cv - expected_std / 300_000.0).abs() < 1e-12);
        assert!((s.max_over_mean - 759_374.0 / 300_000.0).abs() < 1e-12);
    }

    #[test]
    fn idle_replicas_count() {
        let s = Spread::of(&[10, 0]).expect("replicas");
        assert_eq!((s.min, s.max), (0, 10));
        assert_eq!(s.cv, 1.0);
        assert_eq!(s.max_over_mean, 2.0);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[0, 0]).map(|s| s.cv), Some(0.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[], 99.0), None);
    }

    #[test]
    fn percentages_and_buckets() {
        assert_eq!(percent(1, 4), 25.0);
        assert_eq!(percent(1, 0), 0.0);
        let b = buckets(&[-5.0, 0.0, 99.9, 100.0, 250.0, 300.0], 0.0, 300.0, 100.0);
        assert_eq!(b, [2, 1, 1]);
    }
}
