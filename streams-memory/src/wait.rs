//! Blocking group reads, driven by the signal each stream raises when
//! entries are added: no polling, and no wakeup lost between looking and
//! waiting, because a reader registers before it looks.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use streams_core::Result;
use streams_core::backend::{KeyEntries, ReadGroup};
use tokio::time::Instant;

use crate::MemoryBackend;
use crate::state::{Signal, Waiting};

impl MemoryBackend {
    /// `XREADGROUP`, blocking when asked to.
    ///
    /// Cancellation safe: entries are delivered only inside the lock, after
    /// the last wait, so dropping the future while it waits delivers nothing.
    pub(crate) async fn read_group_blocking(&self, read: ReadGroup<'_>) -> Result<Vec<KeyEntries>> {
        let block = read.block.filter(|d| !d.is_zero());
        // `None` when the deadline is beyond what the clock can represent.
        let deadline = block.and_then(|b| Instant::now().checked_add(b));
        let attempt = || {
            self.with_state(|ks, now| {
                ks.read_group(read.group, read.consumer, read.keys, read.count, now)
            })
        };
        let served = attempt()?;
        if block.is_none() || !served.is_empty() {
            return Ok(served);
        }
        let signals: Vec<Arc<Signal>> = {
            let ks = self.lock();
            read.keys
                .iter()
                .filter_map(|key| ks.added_signal(key))
                .collect()
        };
        // Adds raise a stream's signal only while someone waits on it.
        let _waiting = Waiting::new(&signals);
        loop {
            let mut waits: Vec<Pin<Box<_>>> =
                signals.iter().map(|s| Box::pin(s.notified())).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let served = attempt()?;
            if !served.is_empty() {
                return Ok(served);
            }
            let any_added = poll_fn(|cx| {
                if waits.iter_mut().any(|w| w.as_mut().poll(cx).is_ready()) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, any_added).await.is_err() {
                        return Ok(Vec::new());
                    }
                }
                None => any_added.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use streams_core::backend::{Add, CreateGroup, StartAt};
    use streams_core::{StreamBackend, StreamError};

    use super::*;

    fn add(key: &str) -> Add {
        Add::new(key, vec![(Bytes::from("k"), Bytes::from("v"))])
    }

    async fn read(
        backend: &MemoryBackend,
        keys: &[String],
        consumer: &str,
        block: Option<Duration>,
    ) -> Result<Vec<KeyEntries>> {
        backend
            .read_group(ReadGroup::new("g", consumer, keys, 10).with_block(block))
            .await
    }

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| (*k).to_owned()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocked_reader_wakes_on_add() {
        let backend = MemoryBackend::new();
        for key in ["a", "b"] {
            backend
                .create_group(CreateGroup::new(key, "g", StartAt::End))
                .await
                .unwrap();
        }
        let reader = backend.clone();
        let task = tokio::spawn(async move {
            let keys = keys(&["a", "b"]);
            let started = Instant::now();
            let got = read(&reader, &keys, "c", Some(Duration::from_secs(10))).await;
            (got, started)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let added = Instant::now();
        let id = backend.add(add("b")).await.unwrap();
        let (got, started) = task.await.unwrap();
        let woke = Instant::now();
        let got = got.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].key.as_str(), got[0].entries[0].entry.id.as_str()),
            ("b", id.as_str())
        );
        assert!(added - started >= Duration::from_millis(90), "it did block");
        assert!(
            woke - added < Duration::from_millis(50),
            "woke after {:?}",
            woke - added
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocked_read_times_out_empty() {
        let backend = MemoryBackend::new();
        backend
            .create_group(CreateGroup::new("a", "g", StartAt::End))
            .await
            .unwrap();
        // An add to another stream does not end the wait.
        backend
            .create_group(CreateGroup::new("other", "g", StartAt::End))
            .await
            .unwrap();
        let writer = backend.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            writer.add(add("other")).await.unwrap();
        });
        let started = Instant::now();
        let got = read(
            &backend,
            &keys(&["a"]),
            "c",
            Some(Duration::from_millis(150)),
        )
        .await;
        let waited = started.elapsed();
        assert!(got.unwrap().is_empty());
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_millis(400), "{waited:?}");
    }

    #[tokio::test]
    async fn missing_group_fails_at_once_even_when_blocking() {
        let backend = MemoryBackend::new();
        backend
            .create_group(CreateGroup::new("a", "g", StartAt::End))
            .await
            .unwrap();
        let started = Instant::now();
        let err = read(
            &backend,
            &keys(&["a", "missing"]),
            "c",
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StreamError::NoGroup { ref stream, .. } if stream == "missing"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_entry_goes_to_one_of_many_blocked_readers() {
        let backend = MemoryBackend::new();
        backend
            .create_group(CreateGroup::new("a", "g", StartAt::End))
            .await
            .unwrap();
        let readers: Vec<_> = (0..4)
            .map(|i| {
                let b = backend.clone();
                tokio::spawn(async move {
                    let got = read(
                        &b,
                        &keys(&["a"]),
                        &format!("c{i}"),
                        Some(Duration::from_millis(500)),
                    )
                    .await
                    .unwrap();
                    got.iter().map(|k| k.entries.len()).sum::<usize>()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        backend.add(add("a")).await.unwrap();
        backend.add(add("a")).await.unwrap();
        let mut total = 0;
        for r in readers {
            total += r.await.unwrap();
        }
        assert_eq!(total, 2);
        assert_eq!(backend.groups("a").await.unwrap()[0].pending, 2);
    }

    #[tokio::test]
    async fn a_dropped_blocked_read_delivers_nothing() {
        let backend = MemoryBackend::new();
        backend
            .create_group(CreateGroup::new("a", "g", StartAt::End))
            .await
            .unwrap();
        let keys = keys(&["a"]);
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            read(&backend, &keys, "c", Some(Duration::from_secs(5))),
        )
        .await;
        assert!(waited.is_err());
        backend.add(add("a")).await.unwrap();
        let info = &backend.groups("a").await.unwrap()[0];
        assert_eq!((info.pending, info.lag), (0, Some(1)));
        // The entry is still there for the next reader.
        let got = read(&backend, &keys, "d", None).await.unwrap();
        assert_eq!(got[0].entries.len(), 1);
    }
}
