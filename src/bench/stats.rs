//! Summary numbers of a series of durations.

use std::time::Duration;

use serde::Serialize;

/// min/p50/p99/max/average in milliseconds; all zero for an empty series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub avg_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Summary {
            min_ms: ms[0],
            p50_ms: percentile(&ms, 50),
            p99_ms: percentile(&ms, 99),
            max_ms: ms[ms.len() - 1],
            avg_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p` percent
/// of the samples at or below it (so p99 of 50 samples is the maximum, not an interpolation
/// that no message ever took).
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of(&ms(&(1..=100).rev().collect::<Vec<_>>()));
        assert_eq!(
            (s.min_ms, s.p50_ms, s.p99_ms, s.max_ms),
            (1.0, 50.0, 99.0, 100.0)
        );
        assert_eq!(s.avg_ms, 50.5);
        let s = Summary::of(&ms(&[30, 10, 20]));
        assert_eq!((s.p50_ms, s.p99_ms), (20.0, 30.0));
    }

    #[test]
    fn one_and_no_samples() {
        assert_eq!(Summary::of(&ms(&[7])).p99_ms, 7.0);
        assert_eq!(Summary::of(&[]), Summary::default());
    }
}
