//! Retrying with backoff (the Collector's `retry_on_failure`): a retryable failure is tried
//! again after a growing, randomised wait, or the receiver's own requested delay when longer
//! (gRPC `RetryInfo`, HTTP `Retry-After`), until `max_elapsed_time`; a permanent one drops the
//! batch. These are the settings and the backoff they make; the sending loop that applies
//! them is [`super::queue::deliver`].

use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;

/// The Collector's `retry_on_failure`: exponential backoff on retryable failures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    pub enabled: bool,
    /// First wait after a failure (default 5s).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Each wait is randomised by ± this fraction (default 0.5).
    pub randomization_factor: f64,
    /// Each wait is the previous one times this (default 1.5).
    pub multiplier: f64,
    /// Upper bound of a wait (default 30s).
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// A batch still failing this long after its first attempt is dropped (default 300s;
    /// 0 = retry until it is pushed out of the queue).
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetrySettings {
    /// Every problem with these settings, each with its path under the exporter.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        if self.initial_interval.is_zero() {
            problems.push("retry_on_failure::initial_interval must be greater than 0".into());
        }
        if self.max_interval < self.initial_interval {
            problems.push(format!(
                "retry_on_failure::max_interval ({}) must not be less than initial_interval ({})",
                humantime::format_duration(self.max_interval),
                humantime::format_duration(self.initial_interval)
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            problems.push(format!(
                "retry_on_failure::multiplier must be at least 1, found {}",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            problems.push(format!(
                "retry_on_failure::randomization_factor must be between 0 and 1, found {}",
                self.randomization_factor
            ));
        }
        problems
    }

    /// The waits between the attempts at one batch: each the current interval ±
    /// `randomization_factor`, then the interval grows by `multiplier` up to `max_interval`.
    pub fn backoff(&self) -> Backoff {
        Backoff::exponential(
            self.initial_interval,
            self.multiplier,
            self.max_interval,
            self.randomization_factor,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let settings = RetrySettings {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(4),
            ..RetrySettings::default()
        };
        let mut b = settings.backoff();
        let waits: Vec<f64> = (0..6).map(|_| b.next_delay().as_secs_f64()).collect();
        let bases = [1.0, 1.5, 2.25, 3.375, 4.0, 4.0];
        for (w, base) in waits.iter().zip(bases) {
            assert!(
                *w >= base * 0.5 && *w <= base * 1.5,
                "{w} outside {base} ± 50%"
            );
        }
        let exact = RetrySettings {
            randomization_factor: 0.0,
            ..settings
        };
        let mut b = exact.backoff();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_millis(1500));
    }
}
