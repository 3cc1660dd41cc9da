//! A deadline the kernel keeps: a `timerfd` (timerfd_create(2)) waited on through tokio's IO
//! driver.
//!
//! Why not `tokio::time::sleep_until`: tokio's timer wheel files a deadline a second away in a
//! slot 64 ms wide, and wakes the thread at that slot's start to move it to a finer one, so
//! every collection interval cost two wake-ups instead of one; and arming a tokio timer from a
//! running task writes the runtime's eventfd, one more return from `epoll_wait` (three a
//! cycle, strace in docs/benchmarks.md). On the benchmark's VM each wake-up costs the agent
//! 70–100 µs of CPU. A timerfd expires exactly once, at its deadline, and arming it is one
//! system call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A one-shot timer on `CLOCK_MONOTONIC` (the clock of `Instant`), re-armed for each wait.
pub struct Alarm {
    fd: AsyncFd<OwnedFd>,
}

impl Alarm {
    /// Creates the timer, disarmed. Must be called inside a tokio runtime with IO enabled (it
    /// panics otherwise, as every tokio IO type does).
    pub fn new() -> io::Result<Self> {
        // SAFETY: timerfd_create takes no pointer; the result is checked before use.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just returned to us, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd` and never handed out, so the
        // descriptor stays open, and the same, for as long as the registration lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Alarm { fd })
    }

    /// Returns at `deadline` (at once when it has passed). Dropping the future midway leaves
    /// the timer armed; the next call re-arms it, which also forgets any expiry not read.
    pub async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.arm(left)?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Readiness may be left over from an expiry of an earlier arming that nobody
            // waited for: the read then finds nothing (EAGAIN), the readiness is cleared and
            // the wait goes on.
            match ready.try_io(|fd| read_expirations(fd.get_ref())) {
                Ok(Ok(_)) => {
                    // Read, and one-shot: not readable again until re-armed. Said here, the
                    // next wait needs no read to find that out.
                    ready.clear_ready();
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Arms the timer to expire once, `after` from now (not zero: zero disarms a timerfd).
    fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                // A deadline more than 2^63 s away is not one anybody waits for.
                tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, which fits every `c_long`.
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: the descriptor is this struct's own timerfd; `spec` is a valid itimerspec for
        // the duration of the call; a null old-value pointer is allowed.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Reads the expiry count (8 bytes); `WouldBlock` when the timer has not expired.
fn read_expirations(fd: &OwnedFd) -> io::Result<u64> {
    let mut count = [0u8; 8];
    // SAFETY: `count` is 8 writable bytes for the duration of the call; the descriptor is a
    // timerfd this module owns.
    let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn wakes_at_the_deadline_and_not_before() {
        let mut alarm = Alarm::new().unwrap();
        for wait in [30u64, 5, 60] {
            let start = Instant::now();
            alarm
                .sleep_until(start + Duration::from_millis(wait))
                .await
                .unwrap();
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(wait), "woke early: {took:?}");
            assert!(
                took < Duration::from_millis(wait + 500),
                "woke late: {took:?}"
            );
        }
        // A deadline already past returns at once.
        let start = Instant::now();
        alarm.sleep_until(start).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_given_up_does_not_end_the_next_one_early() {
        let mut alarm = Alarm::new().unwrap();
        // Armed for 10 ms but abandoned after 1 ms: the timer expires with nobody reading it.
        let short = alarm.sleep_until(Instant::now() + Duration::from_millis(10));
        let _ = tokio::time::timeout(Duration::from_millis(1), short).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let start = Instant::now();
        alarm
            .sleep_until(start + Duration::from_millis(80))
            .await
            .unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "the stale expiry ended the wait after {:?}",
            start.elapsed()
        );
    }
}
