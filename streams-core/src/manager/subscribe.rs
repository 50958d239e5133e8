//! `subscribe`: the group's messages as a `futures::Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream};

use super::Manager;
use crate::backend::StreamBackend;
use crate::error::{Result, StreamError};
use crate::message::StreamMessage;

/// First pause after a temporary error; doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

impl<B: StreamBackend> Manager<B> {
    /// The messages of a group as an endless stream.
    /// See [`StreamManager::subscribe`](crate::StreamManager::subscribe).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// use futures::StreamExt;
    /// use streams_core::{ConsumerGroupConfig, Manager, ManagerConfig};
    /// use streams_memory::MemoryBackend;
    ///
    /// let manager = Manager::new(MemoryBackend::new(), ManagerConfig::default())?;
    /// manager.create_consumer_group(&ConsumerGroupConfig::new("g", ["tasks"])).await?;
    /// manager.send_message("tasks", serde_json::json!({"n": 1}), None).await?;
    /// let mut messages = manager.subscribe("g");
    /// let first = messages.next().await.unwrap()?;
    /// manager.acknowledge(&first, "g").await?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, group_name: &str) -> BoxStream<'static, Result<StreamMessage>> {
        Box::pin(Subscription {
            manager: self.clone(),
            group: group_name.to_owned(),
            buffer: VecDeque::new(),
            read: None,
            pause: None,
            errors: 0,
            done: false,
        })
    }
}

struct Subscription<B: StreamBackend> {
    manager: Manager<B>,
    group: String,
    buffer: VecDeque<StreamMessage>,
    read: Option<BoxFuture<'static, Result<Vec<StreamMessage>>>>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    errors: u32,
    done: bool,
}

impl<B: StreamBackend> fmt::Debug for Subscription<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("group", &self.group)
            .field("buffered", &self.buffer.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B: StreamBackend> Stream for Subscription<B> {
    type Item = Result<StreamMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(message) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if this.manager.is_closed() {
                this.done = true;
                return Poll::Ready(None);
            }
            if let Some(pause) = this.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
            }
            let read = this.read.get_or_insert_with(|| {
                let manager = this.manager.clone();
                let group = this.group.clone();
                Box::pin(async move { manager.read_messages(&group, None, None).await })
            });
            let result = ready!(read.as_mut().poll(cx));
            this.read = None;
            match result {
                Ok(messages) => {
                    this.errors = 0;
                    this.buffer.extend(messages);
                }
                Err(StreamError::Closed) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Err(e) if e.is_retryable() => {
                    let pause = FIRST_PAUSE
                        .saturating_mul(1 << this.errors.min(6))
                        .min(MAX_PAUSE);
                    this.errors += 1;
                    this.pause = Some(Box::pin(tokio::time::sleep(pause)));
                    return Poll::Ready(Some(Err(e)));
                }
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

impl<B: StreamBackend> Drop for Subscription<B> {
    fn drop(&mut self) {
        if self.buffer.is_empty() || self.manager.is_closed() {
            return;
        }
        // Fetched but never handed to the caller: make them claimable at once
        // instead of leaving them to wait out the claim idle time.
        let messages: Vec<StreamMessage> = self.buffer.drain(..).collect();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let manager = self.manager.clone();
            handle.spawn(async move {
                if let Err(e) = manager.release(&messages).await {
                    tracing::warn!(error = %e, "could not hand back unread messages");
                }
            });
        }
    }
}
