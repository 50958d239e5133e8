//! Latency at a fixed rate: a sender on a thread of its own sends message
//! `i` at `start + i / rate` with its send time in field `t`; the consumer
//! records, for each message it receives, the time since then.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::shape::now_us;
use crate::{Pace, Result};

impl Pace {
    /// How many messages the run sends.
    pub fn count(&self) -> usize {
        (f64::from(self.rate) * self.duration.as_secs_f64()).round() as usize
    }
}

/// Latencies recorded by a consumer, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(Mutex<Vec<u64>>);

impl Latencies {
    /// Records a message sent at `t` (microseconds since the origin).
    pub fn record(&self, t: u64) {
        let latency = now_us().saturating_sub(t);
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(latency);
    }

    /// Everything recorded.
    pub fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One send: message `i`, stamped `t`.
pub type Send = Pin<Box<dyn Future<Output = Result<()>> + std::marker::Send>>;

/// The sender thread of a paced run.
#[derive(Debug)]
pub struct Sender(JoinHandle<Result<()>>);

impl Sender {
    /// Waits for the sender to finish.
    ///
    /// # Errors
    /// The first send that failed.
    pub fn join(self) -> Result<()> {
        match self.0.join() {
            Ok(r) => r,
            Err(_) => Err("the paced sender panicked".into()),
        }
    }
}

/// Starts sending [`Pace::count`] messages at `pace.rate` from a thread with
/// a runtime of its own, so the pace does not depend on tokio's 1 ms timer
/// or on the consumer's load.
pub fn paced<F>(pace: Pace, mut send: F) -> Sender
where
    F: FnMut(u64, u64) -> Send + std::marker::Send + 'static,
{
    Sender(std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let period = Duration::from_secs_f64(1.0 / f64::from(pace.rate.max(1)));
        let start = Instant::now() + Duration::from_millis(50);
        for i in 0..pace.count() as u64 {
            let due = start + period.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            rt.block_on(send(i, now_us()))?;
        }
        Ok(())
    }))
}
