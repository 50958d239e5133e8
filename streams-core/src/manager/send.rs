//! Sending: `send_message` and `send_batch`.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::Manager;
use crate::backend::{Add, StreamBackend, Trim};
use crate::codec::{envelope_fields, json_type, new_mid, now_rfc3339};
use crate::error::{Result, StreamError};
use crate::names::validate_name;

impl<B: StreamBackend> Manager<B> {
    /// Encodes a payload, refusing what is not a JSON object or too large.
    fn encode_payload(&self, data: &Value) -> Result<Bytes> {
        if !data.is_object() {
            return Err(StreamError::PayloadNotObject {
                found: json_type(data),
            });
        }
        let bytes = serde_json::to_vec(data).map_err(|e| StreamError::Decode {
            what: "payload".to_owned(),
            message: e.to_string(),
        })?;
        let limit = self.config().max_message_bytes;
        if bytes.len() > limit {
            return Err(StreamError::PayloadTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        Ok(Bytes::from(bytes))
    }

    fn send_trim(&self, max_len: Option<u64>) -> Result<Vec<Trim>> {
        match max_len.or(self.config().default_max_len) {
            Some(0) => Err(StreamError::config("max_len must be at least 1")),
            Some(len) => Ok(vec![Trim::MaxLen { len, approx: true }]),
            None => Ok(Vec::new()),
        }
    }

    /// Sends a JSON object to a stream; returns the entry id.
    /// See [`StreamManager::send_message`](crate::StreamManager::send_message).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::PayloadNotObject`],
    /// [`StreamError::PayloadTooLarge`], connection errors.
    pub async fn send_message(
        &self,
        stream: &str,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String> {
        validate_name("stream", stream)?;
        let payload = self.encode_payload(&data)?;
        let trim = self.send_trim(max_len)?;
        self.ready().await?;
        let mid = new_mid();
        let add = Add {
            key: self.keys().stream(stream),
            fields: envelope_fields(payload, &now_rfc3339(), 0, Some(&mid), None),
            trim,
        };
        let id = self.backend().add(add).await?;
        self.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Sends any serializable value that serializes to a JSON object.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> streams_core::Result<()> {
    /// # let manager = streams_core::Manager::new(streams_memory::MemoryBackend::new(), Default::default())?;
    /// #[derive(serde::Serialize)]
    /// struct TaskUpdate<'a> { agent_id: &'a str, progress: u8 }
    ///
    /// manager.send("xnai:task_updates", &TaskUpdate { agent_id: "cline-1", progress: 50 }, None).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message), and [`StreamError::Decode`] if
    /// the value cannot be serialized.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        data: &T,
        max_len: Option<u64>,
    ) -> Result<String> {
        let value = serde_json::to_value(data).map_err(|e| StreamError::Decode {
            what: "payload".to_owned(),
            message: e.to_string(),
        })?;
        self.send_message(stream, value, max_len).await
    }

    /// Sends several messages to one stream in one round trip.
    /// See [`StreamManager::send_batch`](crate::StreamManager::send_batch).
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message); nothing is sent if any payload is refused.
    pub async fn send_batch(
        &self,
        stream: &str,
        items: Vec<Value>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>> {
        validate_name("stream", stream)?;
        let trim = self.send_trim(max_len)?;
        let key = self.keys().stream(stream);
        let ts = now_rfc3339();
        let adds = items
            .iter()
            .map(|data| {
                let payload = self.encode_payload(data)?;
                Ok(Add {
                    key: key.clone(),
                    fields: envelope_fields(payload, &ts, 0, Some(&new_mid()), None),
                    trim: trim.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if adds.is_empty() {
            return Ok(Vec::new());
        }
        self.ready().await?;
        let ids = self.backend().add_batch(adds).await?;
        self.inner
            .counters
            .sent
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(ids)
    }
}
