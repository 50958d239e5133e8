//! Sending: `send_message` and `send_batch`.

use bytes::Bytes;
use serde_json::Value;

use super::Manager;
use crate::backend::{Add, AddMany, EntryId, Fields, StreamBackend, Trim};
use crate::codec::{
    MAX_PAYLOAD_DEPTH, depth, envelope_fields, field, json_type, new_mid, now_rfc3339,
};
use crate::config::Durability;
use crate::error::{Result, StreamError};
use crate::names::StreamUse;
use crate::observe::current_traceparent;
use crate::observe::{Count, Labels};

impl<B: StreamBackend> Manager<B> {
    /// Encodes a payload, refusing what is not a JSON object, nests deeper
    /// than readers decode, or is too large.
    fn encode_payload(&self, data: &Value) -> Result<Bytes> {
        if !data.is_object() {
            return Err(StreamError::PayloadNotObject {
                found: json_type(data),
            });
        }
        let levels = depth(data);
        if levels > MAX_PAYLOAD_DEPTH {
            return Err(StreamError::PayloadTooDeep {
                depth: levels,
                limit: MAX_PAYLOAD_DEPTH,
            });
        }
        let mut bytes = Vec::with_capacity(128);
        serde_json::to_writer(&mut bytes, data).map_err(|e| StreamError::Encode {
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

    /// Writes durably (see [`Durability`]): the ids once the confirmations
    /// asked for came, or [`StreamError::DurabilityNotConfirmed`] with the
    /// ids (counted as sent: they are on the server) when they fell short.
    async fn add_durable(
        &self,
        stream: &str,
        many: AddMany<'_>,
        durability: Durability,
    ) -> Result<Vec<EntryId>> {
        let count = many.entries.len();
        let wrote = self.backend().add_durable(many, durability).await?;
        if wrote.ids.len() != count {
            return Err(StreamError::backend(
                self.backend().name(),
                format!("{} ids for {count} entries added", wrote.ids.len()),
            ));
        }
        let confirmed =
            wrote.replicas >= durability.replicas && (!durability.fsync || wrote.fsynced_locally);
        if confirmed {
            return Ok(wrote.ids);
        }
        self.count(Count::Sent, Labels::stream(stream), count as u64);
        tracing::warn!(
            stream,
            entries = count,
            replicas = wrote.replicas,
            wanted = durability.replicas,
            fsync = durability.fsync,
            fsynced_locally = wrote.fsynced_locally,
            "sent, but durability was not confirmed in time"
        );
        Err(StreamError::DurabilityNotConfirmed {
            stream: stream.to_owned(),
            ids: wrote.ids.into_iter().map(EntryId::into_string).collect(),
            wanted_replicas: durability.replicas,
            replicas: wrote.replicas,
            fsync: durability.fsync,
            fsynced_locally: wrote.fsynced_locally,
            timeout: durability.timeout,
        })
    }

    /// Sends a JSON object to a stream; returns the entry id.
    /// See [`StreamManager::send_message`](crate::StreamManager::send_message).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`], [`StreamError::PayloadNotObject`],
    /// [`StreamError::PayloadTooDeep`], [`StreamError::PayloadTooLarge`],
    /// connection errors.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = stream.as_ref()))]
    pub async fn send_message(
        &self,
        stream: impl AsRef<str>,
        data: Value,
        max_len: Option<u64>,
    ) -> Result<String> {
        let stream = stream.as_ref();
        self.keys().check_stream(stream, StreamUse::Send)?;
        self.check_partition(stream).await?;
        let payload = self.encode_payload(&data)?;
        let trim = self.send_trim(max_len)?;
        self.ready().await?;
        let mid = new_mid();
        let mut add = Add::new(
            self.keys().stream(stream),
            envelope_fields(
                payload,
                &now_rfc3339(),
                0,
                Some(&mid),
                None,
                current_traceparent().as_deref(),
            ),
        );
        add.trim = trim;
        let id = match self.config().durability {
            None => self.backend().add(add).await?,
            Some(durability) => {
                let many = AddMany::new(&add.key, vec![add.fields]).with_trim(&add.trim);
                let mut ids = self.add_durable(stream, many, durability).await?;
                match ids.pop() {
                    Some(id) if ids.is_empty() => id,
                    _ => {
                        return Err(StreamError::backend(
                            self.backend().name(),
                            "a durable add of one entry returned another number of ids",
                        ));
                    }
                }
            }
        };
        tracing::debug!(id = %id.as_str(), "sent");
        self.count(Count::Sent, Labels::stream(stream), 1);
        Ok(id.into_string())
    }

    /// Sends several messages to one stream in one round trip.
    /// See [`StreamManager::send_batch`](crate::StreamManager::send_batch).
    ///
    /// # Errors
    /// As [`send_message`](Self::send_message); nothing is sent if any payload is refused.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = stream.as_ref(), count = items.len()))]
    pub async fn send_batch(
        &self,
        stream: impl AsRef<str>,
        items: Vec<Value>,
        max_len: Option<u64>,
    ) -> Result<Vec<String>> {
        let stream = stream.as_ref();
        self.keys().check_stream(stream, StreamUse::Send)?;
        let trim = self.send_trim(max_len)?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.check_partition(stream).await?;
        let key = self.keys().stream(stream);
        // One time and trace context for the whole batch, shared by its entries.
        let ts = Bytes::from(now_rfc3339());
        let traceparent = current_traceparent().map(Bytes::from);
        let mut entries = Vec::with_capacity(items.len());
        for data in &items {
            let payload = self.encode_payload(data)?;
            entries.push(batch_fields(payload, &ts, new_mid(), traceparent.as_ref()));
        }
        drop(items);
        self.ready().await?;
        let many = AddMany::new(&key, entries).with_trim(&trim);
        let ids = match self.config().durability {
            None => self.backend().add_many(many).await?,
            Some(durability) => self.add_durable(stream, many, durability).await?,
        };
        self.count(Count::Sent, Labels::stream(stream), ids.len() as u64);
        Ok(ids.into_iter().map(EntryId::into_string).collect())
    }
}

/// The envelope of one message of a batch: [`envelope_fields`] of a first
/// attempt, with the batch's time and trace context shared, not copied.
fn batch_fields(payload: Bytes, ts: &Bytes, mid: String, traceparent: Option<&Bytes>) -> Fields {
    let mut fields = Fields::with_capacity(3 + usize::from(traceparent.is_some()));
    fields.push((Bytes::from_static(field::DATA.as_bytes()), payload));
    fields.push((Bytes::from_static(field::TS.as_bytes()), ts.clone()));
    fields.push((Bytes::from_static(field::MID.as_bytes()), Bytes::from(mid)));
    if let Some(traceparent) = traceparent {
        fields.push((
            Bytes::from_static(field::TRACEPARENT.as_bytes()),
            traceparent.clone(),
        ));
    }
    fields
}
