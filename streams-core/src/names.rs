//! Stream names: the predefined streams, validation, and the key layout.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::config::{DlqConfig, DlqLayout};
use crate::error::{Result, StreamError};

/// Longest accepted stream, group, consumer or namespace name, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// The predefined streams of the agent bus.
///
/// A `StreamType` is accepted wherever a stream name is: it dereferences to
/// `&str`, converts into `String`, and implements `AsRef<str>` and `Display`.
///
/// ```
/// use streams_core::StreamType;
///
/// assert_eq!(StreamType::AgentBus.as_str(), "xnai:agent_bus");
/// let name: &str = &StreamType::Alerts;
/// assert_eq!(name, "xnai:alerts");
/// assert_eq!(StreamType::Dlq.to_string(), "xnai:dlq");
/// assert!(matches!("xnai:task_updates".parse::<StreamType>(), Ok(StreamType::TaskUpdates)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamType {
    /// `xnai:agent_bus`: agent coordination.
    #[serde(rename = "xnai:agent_bus")]
    AgentBus,
    /// `xnai:task_updates`: task status updates.
    #[serde(rename = "xnai:task_updates")]
    TaskUpdates,
    /// `xnai:memory_updates`: memory bank changes.
    #[serde(rename = "xnai:memory_updates")]
    MemoryUpdates,
    /// `xnai:alerts`: alerts and escalations.
    #[serde(rename = "xnai:alerts")]
    Alerts,
    /// `xnai:dlq`: the dead-letter queue.
    #[serde(rename = "xnai:dlq")]
    Dlq,
}

impl StreamType {
    /// Every predefined stream, in the spec's order.
    pub const ALL: [Self; 5] = [
        Self::AgentBus,
        Self::TaskUpdates,
        Self::MemoryUpdates,
        Self::Alerts,
        Self::Dlq,
    ];

    /// The stream's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AgentBus => "xnai:agent_bus",
            Self::TaskUpdates => "xnai:task_updates",
            Self::MemoryUpdates => "xnai:memory_updates",
            Self::Alerts => "xnai:alerts",
            Self::Dlq => "xnai:dlq",
        }
    }
}

impl Deref for StreamType {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StreamType {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<StreamType> for String {
    fn from(s: StreamType) -> Self {
        s.as_str().to_owned()
    }
}

impl PartialEq<str> for StreamType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StreamType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for StreamType {
    type Err = StreamError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| StreamError::InvalidName {
                kind: "stream",
                name: s.to_owned(),
                reason: "not one of the predefined streams",
            })
    }
}

/// Checks a stream, group, consumer or namespace name.
///
/// A name is non-empty, at most [`MAX_NAME_BYTES`] bytes, and has no
/// whitespace, control characters, `{` or `}` (braces are reserved for the
/// Redis Cluster hash tags of the key layout).
///
/// ```
/// use streams_core::validate_name;
///
/// assert!(validate_name("stream", "xnai:agent_bus").is_ok());
/// assert!(validate_name("stream", "has space").is_err());
/// assert!(validate_name("group", "").is_err());
/// ```
///
/// # Errors
/// [`StreamError::InvalidName`] saying which rule the name breaks.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 512 bytes")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or control characters")
    } else if name.contains(['{', '}']) {
        Some("braces `{` `}` are reserved for cluster hash tags")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(StreamError::InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Where every key of a manager lives. Pure string arithmetic; see
/// `docs/wire-format.md` for the layout.
///
/// ```
/// use streams_core::{DlqConfig, KeyLayout};
///
/// let keys = KeyLayout::new(Some("t1"), &DlqConfig::default(), "xnai:groups").unwrap();
/// assert_eq!(keys.stream("xnai:agent_bus"), "t1:xnai:agent_bus");
/// assert_eq!(keys.retry_schedule("xnai:agent_bus", "g"), "t1:xnai:retry:{t1:xnai:agent_bus}:g");
/// assert_eq!(keys.retry_ready("xnai:agent_bus", "g"), "t1:xnai:retry:{t1:xnai:agent_bus}:g:ready");
/// assert_eq!(keys.dlq("xnai:agent_bus"), "t1:xnai:dlq");
/// assert_eq!(keys.registry(), "t1:xnai:groups");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
    retry_prefix: String,
    dlq_prefix: String,
    dlq_layout: DlqLayout,
    registry: String,
}

impl KeyLayout {
    /// Builds the layout for an optional namespace.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] if the namespace or a prefix is not a valid name.
    pub fn new(namespace: Option<&str>, dlq: &DlqConfig, registry_key: &str) -> Result<Self> {
        let prefix = match namespace {
            Some(ns) => {
                validate_name("namespace", ns)?;
                format!("{ns}:")
            }
            None => String::new(),
        };
        validate_name("stream", &dlq.dlq_prefix)?;
        validate_name("stream", &dlq.retry_prefix)?;
        validate_name("stream", registry_key)?;
        Ok(Self {
            registry: format!("{prefix}{registry_key}"),
            retry_prefix: dlq.retry_prefix.clone(),
            dlq_prefix: dlq.dlq_prefix.clone(),
            dlq_layout: dlq.layout,
            prefix,
        })
    }

    /// The namespace prefix, with its trailing `:` (empty without a namespace).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of a stream.
    pub fn stream(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// The logical stream name of a stream key, if the key is in this namespace.
    pub fn logical<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())
    }

    /// The sorted set of a group's scheduled retries for one stream.
    ///
    /// The hash tag is the stream's key, so stream, schedule and ready stream
    /// share one Redis Cluster slot.
    pub fn retry_schedule(&self, stream: &str, group: &str) -> String {
        format!(
            "{p}{r}:{{{p}{stream}}}:{group}",
            p = self.prefix,
            r = self.retry_prefix
        )
    }

    /// The private stream a group reads its due retries from.
    pub fn retry_ready(&self, stream: &str, group: &str) -> String {
        let mut key = self.retry_schedule(stream, group);
        key.push_str(":ready");
        key
    }

    /// The dead-letter stream for entries that came from `stream`.
    pub fn dlq(&self, stream: &str) -> String {
        match self.dlq_layout {
            DlqLayout::Shared => format!("{}{}", self.prefix, self.dlq_prefix),
            DlqLayout::PerStream => format!(
                "{p}{d}:{{{p}{stream}}}",
                p = self.prefix,
                d = self.dlq_prefix
            ),
        }
    }

    /// Whether every source stream shares the one dead-letter stream.
    pub fn dlq_is_shared(&self) -> bool {
        self.dlq_layout == DlqLayout::Shared
    }

    /// The hash that maps group names to their configuration.
    pub fn registry(&self) -> &str {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_type_names_are_exact() {
        let names: Vec<&str> = StreamType::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "xnai:agent_bus",
                "xnai:task_updates",
                "xnai:memory_updates",
                "xnai:alerts",
                "xnai:dlq"
            ]
        );
        assert_eq!(
            serde_json::to_string(&StreamType::MemoryUpdates).unwrap(),
            "\"xnai:memory_updates\""
        );
        assert!("nope".parse::<StreamType>().is_err());
        assert_eq!(StreamType::Dlq, "xnai:dlq");
    }

    #[test]
    fn validation_rules() {
        assert!(validate_name("stream", "a").is_ok());
        assert!(validate_name("stream", &"x".repeat(512)).is_ok());
        for bad in ["", "a b", "a\tb", "a\u{7}b", "a{b", "}", &"x".repeat(513)] {
            assert!(
                matches!(
                    validate_name("stream", bad),
                    Err(StreamError::InvalidName { .. })
                ),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn per_stream_dlq_shares_the_source_slot() {
        let cfg = DlqConfig::default().with_layout(DlqLayout::PerStream);
        let keys = KeyLayout::new(None, &cfg, "xnai:groups").unwrap();
        assert_eq!(keys.dlq("xnai:alerts"), "xnai:dlq:{xnai:alerts}");
        assert_eq!(
            keys.retry_schedule("xnai:alerts", "g"),
            "xnai:retry:{xnai:alerts}:g"
        );
        assert_eq!(keys.logical("xnai:alerts"), Some("xnai:alerts"));
    }

    #[test]
    fn namespace_is_validated() {
        assert!(KeyLayout::new(Some("bad ns"), &DlqConfig::default(), "xnai:groups").is_err());
        let keys = KeyLayout::new(Some("ns"), &DlqConfig::default(), "xnai:groups").unwrap();
        assert_eq!(keys.logical("ns:s"), Some("s"));
        assert_eq!(keys.logical("other:s"), None);
    }
}
