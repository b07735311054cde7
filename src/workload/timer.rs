//! Precise time for the real-time loops: the run's clock and a sub-millisecond deadline wait.
//! It is the one timer of every such loop: the server's, the load generator's and the link
//! emulator's packet thread (`linkemu::engine`), which waits on its TUN devices and its
//! deliveries' deadlines in one [`DeadlineWait`].
//!
//! tokio's timers (and `epoll_wait`'s millisecond timeout) round up to a millisecond, which would
//! turn a `const(200us)` service time into 1 ms and make a 5,000 req/s schedule bursty. The
//! loops here instead wait on a `timerfd` armed with an absolute deadline, with the thread's
//! timer slack set to 1 ns, and they stop sleeping [`DEFAULT_SPIN`] before the deadline to
//! busy-poll the remaining stretch (still serving I/O, since the busy wait is a non-blocking
//! `epoll_wait`). The guarantee: a deadline is never acted on early, and it is acted on late only
//! by the time one loop iteration takes when the thread has a CPU; the lateness is measured by
//! `timer_lateness_is_small` below and by the generator's reported dispatch lag.

use std::io;

use super::sys::{self, Event, Poller, TimerFd, READABLE};
use crate::model::time::{Duration, Instant};

/// How long before a deadline a loop stops sleeping and busy-polls. Chosen well above the
/// measured wake-up latency of a timerfd with 1 ns slack on the development VMs (median ~19 µs,
/// p90 ~28 µs, idle machine); the spin costs 100 µs of CPU per deadline.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// Maps `CLOCK_MONOTONIC` onto a run's time line: [`Instant`] zero is the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    origin_ns: u64,
}

impl Clock {
    /// A clock whose origin is now.
    pub fn start_now() -> Self {
        Clock {
            origin_ns: sys::monotonic_ns(),
        }
    }
    /// A clock with a given origin in `CLOCK_MONOTONIC` nanoseconds, so that processes and
    /// threads on one machine share one time line (monotonic time is system-wide).
    pub fn with_origin_ns(origin_ns: u64) -> Self {
        Clock { origin_ns }
    }
    pub fn origin_ns(&self) -> u64 {
        self.origin_ns
    }
    pub fn now(&self) -> Instant {
        Instant(sys::monotonic_ns().saturating_sub(self.origin_ns))
    }
    /// The instant of a `CLOCK_REALTIME` timestamp (a kernel packet timestamp), through the
    /// two clocks' offset as of now (so a wall-clock step or slew is followed).
    pub fn from_realtime(&self, real_ns: u64) -> Instant {
        let offset = sys::realtime_ns().saturating_sub(sys::monotonic_ns());
        Instant(
            real_ns
                .saturating_sub(offset)
                .saturating_sub(self.origin_ns),
        )
    }
    fn to_monotonic_ns(self, t: Instant) -> u64 {
        self.origin_ns.saturating_add(t.as_nanos())
    }
}

/// The token under which a [`DeadlineWait`] registers its timer with the poller; loops must not
/// use it for their own descriptors.
pub const TIMER_TOKEN: u64 = u64::MAX;

/// Waits for I/O readiness or a deadline, whichever comes first, with sub-millisecond precision.
pub struct DeadlineWait {
    timer: TimerFd,
    spin: Duration,
    /// The monotonic time the timer is armed for (0: disarmed), to skip redundant re-arming.
    armed_ns: u64,
}

impl DeadlineWait {
    /// Registers a timerfd with `poller` and sets the calling thread's timer slack to 1 ns; use
    /// the returned value on this thread only.
    pub fn new(poller: &Poller, spin: Duration) -> io::Result<Self> {
        sys::set_min_timer_slack();
        let timer = TimerFd::new()?;
        poller.add(timer.raw(), TIMER_TOKEN, READABLE)?;
        Ok(DeadlineWait {
            timer,
            spin,
            armed_ns: 0,
        })
    }

    /// Fills `events` with ready descriptors (never the timer's own). Returns at once if
    /// something is ready or `deadline` is within the spin window (the caller then loops, which
    /// is the busy wait); otherwise sleeps until I/O or `deadline - spin`. `None` waits for I/O.
    pub fn wait(
        &mut self,
        poller: &mut Poller,
        clock: &Clock,
        deadline: Option<Instant>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        self.wait_spinning(poller, clock, deadline, self.spin, events)
    }

    /// Like [`wait`](Self::wait) for a deadline that needs no precision (housekeeping): sleeps
    /// until it without the busy-poll, so it may be acted on a timer wake-up late.
    pub fn wait_coarse(
        &mut self,
        poller: &mut Poller,
        clock: &Clock,
        deadline: Instant,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        self.wait_spinning(poller, clock, Some(deadline), Duration::ZERO, events)
    }

    fn wait_spinning(
        &mut self,
        poller: &mut Poller,
        clock: &Clock,
        deadline: Option<Instant>,
        spin: Duration,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        let block = match deadline {
            None => {
                self.arm(0)?;
                true
            }
            Some(d) => {
                let now = clock.now();
                if d <= now || d.saturating_since(now) <= spin {
                    false
                } else {
                    self.arm(clock.to_monotonic_ns(d - spin))?;
                    true
                }
            }
        };
        poller.wait(block, events)?;
        if let Some(i) = events.iter().position(|e| e.token == TIMER_TOKEN) {
            events.swap_remove(i);
            self.timer.ack();
            self.armed_ns = 0;
        }
        Ok(())
    }

    fn arm(&mut self, at_ns: u64) -> io::Result<()> {
        if self.armed_ns != at_ns {
            self.timer.set_abs(at_ns)?;
            self.armed_ns = at_ns;
        }
        Ok(())
    }
}

/// Blocks the calling thread until `deadline`: `clock_nanosleep` to `deadline - spin` with 1 ns
/// timer slack, then a spin on the clock. Returns how late it woke.
pub fn sleep_until(clock: &Clock, deadline: Instant, spin: Duration) -> Duration {
    sys::set_min_timer_slack();
    let wake = deadline - spin;
    if clock.now() < wake {
        sys::sleep_until_abs(clock.to_monotonic_ns(wake));
    }
    loop {
        let now = clock.now();
        if now >= deadline {
            return now.saturating_since(deadline);
        }
        std::hint::spin_loop();
    }
}

/// Burns the CPU for `d` (the `--work cpu` service model).
pub fn spin_for(clock: &Clock, d: Duration) {
    let end = clock.now() + d;
    while clock.now() < end {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_until_is_never_early_and_rarely_late() {
        let clock = Clock::start_now();
        let mut late = Vec::new();
        for i in 1..=200u64 {
            let deadline = Instant(i * 250_000); // every 250 us
            let l = sleep_until(&clock, deadline, DEFAULT_SPIN);
            assert!(clock.now() >= deadline);
            late.push(l.as_nanos());
        }
        late.sort_unstable();
        // The median must be far below tokio's 1 ms granularity even on a loaded 2-core VM.
        assert!(late[100] < 50_000, "median lateness {} ns", late[100]);
    }

    #[test]
    fn deadline_wait_wakes_at_the_deadline_without_io() {
        let mut poller = Poller::new(8).unwrap();
        let mut wait = DeadlineWait::new(&poller, DEFAULT_SPIN).unwrap();
        let clock = Clock::start_now();
        let mut events = Vec::new();
        let mut late = Vec::new();
        for i in 1..=100u64 {
            let deadline = Instant(i * 300_000);
            while clock.now() < deadline {
                wait.wait(&mut poller, &clock, Some(deadline), &mut events)
                    .unwrap();
                assert!(
                    events.is_empty(),
                    "the timer's own event leaked: {events:?}"
                );
            }
            late.push(clock.now().saturating_since(deadline).as_nanos());
        }
        late.sort_unstable();
        assert!(late[50] < 50_000, "median lateness {} ns", late[50]);
    }
}
