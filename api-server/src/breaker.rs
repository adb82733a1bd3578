//! The circuit breaker around introspection calls: closed, open, half-open.
//!
//! Closed, calls go through and consecutive failures are counted; at the threshold the breaker
//! opens. Open, calls are refused at once with the time left, so requests with uncached tokens
//! fail fast instead of queueing behind a dead Tessera. When the open time is over, exactly one
//! call (the probe) goes through, half-open: its success closes the breaker, its failure opens it
//! again for another full period. The breaker never sees cached answers: those keep working
//! whatever its state.
//!
//! Time is passed in, so every transition is unit-tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::Gauge;

/// The breaker's state, as `/health` and the `api_breaker_state` gauge report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The gauge's encoding: 0 closed, 1 half-open, 2 open (higher is worse).
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
    gauge: Gauge,
}

/// The answer to "may I call Tessera now?".
pub enum Admission<'a> {
    Call(Permit<'a>),
    /// Refused without calling; try again after this long.
    Refused {
        retry_after: Duration,
    },
}

/// Leave to make one call. Report its outcome with [`Permit::succeeded`] or [`Permit::failed`];
/// a probe dropped without an outcome (its request was cancelled) lets the next request probe.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    /// `threshold` consecutive failures open the breaker for `open_for`. A threshold of 0 is
    /// taken as 1.
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        let gauge = metrics::gauge!(crate::metrics::BREAKER_STATE);
        gauge.set(BreakerState::Closed.gauge_value());
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
            gauge,
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn admit(&self, now: Instant) -> Admission<'_> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admission::Call(self.permit(false)),
            State::Open { until } if now < until => Admission::Refused {
                retry_after: until - now,
            },
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.set(&mut state, State::HalfOpen { probing: true });
                Admission::Call(self.permit(true))
            }
            // One probe at a time; the others hear back within the probe's own timeout.
            State::HalfOpen { probing: true } => Admission::Refused {
                retry_after: self.open_for.min(Duration::from_secs(1)),
            },
        }
    }

    fn permit(&self, probe: bool) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            reported: false,
        }
    }

    fn outcome(&self, probe: bool, ok: bool, now: Instant) {
        let mut state = self.lock();
        let next = match (&*state, probe, ok) {
            (_, true, true) => State::Closed { failures: 0 },
            (_, true, false) => State::Open {
                until: now + self.open_for,
            },
            (State::Closed { .. }, false, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false, false) if failures + 1 >= self.threshold => State::Open {
                until: now + self.open_for,
            },
            (State::Closed { failures }, false, false) => State::Closed { failures: failures + 1 },
            // A call admitted before the breaker opened says nothing the probe will not.
            (_, false, _) => return,
        };
        self.set(&mut state, next);
    }

    fn set(&self, state: &mut State, next: State) {
        let before = discriminant(state);
        *state = next;
        let after = discriminant(state);
        if before != after {
            self.gauge.set(after.gauge_value());
            metrics::counter!(crate::metrics::BREAKER_TRANSITIONS, "to" => after.as_str()).increment(1);
            match after {
                BreakerState::Open => tracing::warn!("introspection breaker opened"),
                BreakerState::HalfOpen => tracing::info!("introspection breaker half-open: probing Tessera"),
                BreakerState::Closed => tracing::info!("introspection breaker closed"),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value that every write leaves whole; a poisoned lock still holds
        // a valid one.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn discriminant(state: &State) -> BreakerState {
    match state {
        State::Closed { .. } => BreakerState::Closed,
        State::Open { .. } => BreakerState::Open,
        State::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

impl Permit<'_> {
    pub fn succeeded(mut self, now: Instant) {
        self.reported = true;
        self.breaker.outcome(self.probe, true, now);
    }

    pub fn failed(mut self, now: Instant) {
        self.reported = true;
        self.breaker.outcome(self.probe, false, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            let mut state = self.breaker.lock();
            if let State::HalfOpen { probing: true } = *state {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(10);

    fn call(b: &Breaker, now: Instant, ok: bool) {
        match b.admit(now) {
            Admission::Call(p) if ok => p.succeeded(now),
            Admission::Call(p) => p.failed(now),
            Admission::Refused { .. } => panic!("refused in state {:?}", b.state()),
        }
    }

    fn refused_for(b: &Breaker, now: Instant) -> Option<Duration> {
        match b.admit(now) {
            Admission::Refused { retry_after } => Some(retry_after),
            Admission::Call(_) => None,
        }
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = Breaker::new(3, OPEN);
        let t = Instant::now();
        call(&b, t, false);
        call(&b, t, false);
        call(&b, t, true); // a success resets the count
        call(&b, t, false);
        call(&b, t, false);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, t, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            refused_for(&b, t + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn after_the_open_time_one_probe_goes_through_and_its_success_closes() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        call(&b, t, false);
        let later = t + OPEN;
        let Admission::Call(probe) = b.admit(later) else {
            panic!("the probe should be admitted")
        };
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(refused_for(&b, later).is_some(), "a second caller waits for the probe");
        probe.succeeded(later);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(refused_for(&b, later), None);
    }

    #[test]
    fn a_failed_probe_opens_for_another_full_period() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        call(&b, t, false);
        let later = t + OPEN + Duration::from_secs(1);
        call(&b, later, false);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(refused_for(&b, later), Some(OPEN));
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_request_probe() {
        let b = Breaker::new(1, OPEN);
        let t = Instant::now();
        call(&b, t, false);
        drop(b.admit(t + OPEN));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        call(&b, t + OPEN, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_answers_from_before_the_opening_change_nothing() {
        let b = Breaker::new(2, OPEN);
        let t = Instant::now();
        let Admission::Call(early) = b.admit(t) else { panic!() };
        call(&b, t, false);
        call(&b, t, false);
        assert_eq!(b.state(), BreakerState::Open);
        early.succeeded(t);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
