//! The waits between attempts, for everything that retries: a failing receiver
//! (`pipeline::run`), the CRI event stream's reconnects and the exporters' `retry_on_failure`.
//! One implementation, backon's exponential backoff; where a wait is randomised (the
//! Collector's `randomization_factor`), by ± that fraction, with `fastrand`. Tested where it
//! is used: `pipeline::run` (doubling) and `exporters::helper::retry` (randomised).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Growing waits: the first, then each the previous times a factor, up to a bound.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    waits: <ExponentialBuilder as BackoffBuilder>::Backoff,
    /// Each wait is randomised by ± this fraction of it (0: exact).
    randomization: f64,
    max: Duration,
}

impl Backoff {
    /// `first`, doubling, at most `cap` (a `first` above `cap` is `cap`). No randomness.
    pub fn doubling(first: Duration, cap: Duration) -> Self {
        Self::exponential(first.min(cap), 2.0, cap, 0.0)
    }

    /// The Collector's `configretry`: each wait is the current interval ± `randomization`
    /// (a fraction in 0..=1), then the interval grows by `multiplier` up to `max`.
    pub fn exponential(
        initial: Duration,
        multiplier: f64,
        max: Duration,
        randomization: f64,
    ) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_factor(multiplier as f32)
            .with_max_delay(max)
            .without_max_times();
        Backoff {
            waits: builder.build(),
            builder,
            randomization,
            max,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts or total time the sequence never ends.
        let base = self.waits.next().unwrap_or(self.max);
        if self.randomization <= 0.0 {
            return base;
        }
        let secs = base.as_secs_f64();
        let delta = secs * self.randomization;
        Duration::try_from_secs_f64(secs - delta + fastrand::f64() * 2.0 * delta).unwrap_or(base)
    }

    /// Starts over from the first wait.
    pub fn reset(&mut self) {
        self.waits = self.builder.build();
    }
}
