//! Stream names: the predefined streams, validation, and the key layout.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{DlqConfig, DlqLayout, RetryConfig};
use crate::error::{Result, StreamError};

/// Longest accepted stream, group, consumer or namespace name, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// The name whose key holds the partition counts with the default registry
/// (reserved as a stream name); with another registry key `r`, it is
/// `r:partitions`, so that each registry has its own counts.
const PARTITIONS_NAME: &str = "xnai:partitions";

/// The default registry key.
const REGISTRY_NAME: &str = "xnai:groups";

/// The predefined streams of the agent bus.
///
/// A `StreamType` is accepted wherever a stream name is taken as
/// `impl AsRef<str>` (the [`Manager`](crate::Manager) methods); for the
/// object-safe [`StreamManager`](crate::StreamManager) trait, pass
/// [`as_str`](Self::as_str). It converts into `String` and implements
/// `Display`.
///
/// ```
/// use streams_core::StreamType;
///
/// assert_eq!(StreamType::AgentBus.as_str(), "xnai:agent_bus");
/// assert_eq!(StreamType::Alerts.as_ref(), "xnai:alerts");
/// assert_eq!(StreamType::Dlq.to_string(), "xnai:dlq");
/// assert!(matches!("xnai:task_updates".parse::<StreamType>(), Ok(StreamType::TaskUpdates)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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

/// Checks a namespace: a valid name (see [`validate_name`]) without `:`, so
/// that it is exactly one key segment.
///
/// # Errors
/// [`StreamError::InvalidName`] saying which rule the name breaks.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    validate_name("namespace", namespace)?;
    if namespace.contains(':') {
        return Err(StreamError::InvalidName {
            kind: "namespace",
            name: namespace.to_owned(),
            reason: "a namespace is one key segment: it cannot contain `:`",
        });
    }
    Ok(())
}

/// Where every key of a manager lives. Pure string arithmetic; see
/// `docs/wire-format.md` for the layout and why it is injective: two
/// different (namespace, stream, group) triples never share a key, and no
/// stream name reaches a key of another kind.
///
/// - Without a namespace a stream's key is its name; with namespace `ns`
///   it is `ns:{<stream>}`. Stream names cannot contain braces, so the two
///   forms never meet, and the braces make the stream name the Redis
///   Cluster hash tag.
/// - A group's retry keys are `[ns:]<retry prefix>:{<stream>}:schedule:<group>`
///   and `...:ready:<group>`: the kind comes before the group name, so no
///   group name reaches another group's keys.
/// - The registry (`xnai:groups`), the partition counts
///   (`xnai:partitions`) and the shared dead-letter stream (`xnai:dlq`)
///   take the place of streams of those names, which are reserved (see
///   [`KeyLayout::reserved`]).
///
/// ```
/// use streams_core::{DlqConfig, KeyLayout, RetryConfig};
///
/// let keys = KeyLayout::new(Some("t1"), &DlqConfig::default(), &RetryConfig::default(), "xnai:groups").unwrap();
/// assert_eq!(keys.stream("xnai:agent_bus"), "t1:{xnai:agent_bus}");
/// assert_eq!(keys.retry_schedule("xnai:agent_bus", "g"), "t1:xnai:retry:{xnai:agent_bus}:schedule:g");
/// assert_eq!(keys.retry_ready("xnai:agent_bus", "g"), "t1:xnai:retry:{xnai:agent_bus}:ready:g");
/// assert_eq!(keys.dlq("xnai:agent_bus"), "t1:{xnai:dlq}");
/// assert_eq!(keys.registry(), "t1:{xnai:groups}");
/// assert_eq!(keys.partitions(), "t1:{xnai:partitions}");
/// assert_eq!(keys.probe(), "t1:xnai:probe:{}");
///
/// let bare = KeyLayout::new(None, &DlqConfig::default(), &RetryConfig::default(), "xnai:groups").unwrap();
/// assert_eq!(bare.stream("xnai:agent_bus"), "xnai:agent_bus");
/// assert_eq!(bare.retry_ready("xnai:agent_bus", "g"), "xnai:retry:{xnai:agent_bus}:ready:g");
/// assert_eq!(bare.dlq("xnai:agent_bus"), "xnai:dlq");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// `ns:` or empty.
    prefix: String,
    namespace: Option<String>,
    retry_prefix: String,
    dlq_prefix: String,
    dlq_layout: DlqLayout,
    registry_name: String,
    registry: String,
    partitions_name: String,
    partitions: String,
}

impl KeyLayout {
    /// Builds the layout for an optional namespace.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`] if the namespace or a prefix is not a valid name.
    pub fn new(
        namespace: Option<&str>,
        dlq: &DlqConfig,
        retry: &RetryConfig,
        registry_key: &str,
    ) -> Result<Self> {
        if let Some(ns) = namespace {
            validate_namespace(ns)?;
        }
        validate_name("stream", &dlq.dlq_prefix)?;
        validate_name("stream", &retry.key_prefix)?;
        validate_name("stream", registry_key)?;
        let partitions_name = if registry_key == REGISTRY_NAME {
            PARTITIONS_NAME.to_owned()
        } else {
            format!("{registry_key}:partitions")
        };
        for (kind, name) in [
            ("registry key", registry_key),
            ("dead-letter prefix", dlq.dlq_prefix.as_str()),
            ("retry prefix", retry.key_prefix.as_str()),
        ] {
            if name == partitions_name || name == PARTITIONS_NAME {
                return Err(StreamError::InvalidName {
                    kind,
                    name: name.to_owned(),
                    reason: "reserved for the partition counts",
                });
            }
        }
        let mut keys = Self {
            prefix: namespace.map(|ns| format!("{ns}:")).unwrap_or_default(),
            namespace: namespace.map(str::to_owned),
            retry_prefix: retry.key_prefix.clone(),
            dlq_prefix: dlq.dlq_prefix.clone(),
            dlq_layout: dlq.layout,
            registry_name: registry_key.to_owned(),
            registry: String::new(),
            partitions: String::new(),
            partitions_name,
        };
        keys.registry = keys.stream(registry_key);
        keys.partitions = keys.stream(&keys.partitions_name);
        Ok(keys)
    }

    /// The namespace, if there is one.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The key of a stream.
    pub fn stream(&self, stream: &str) -> String {
        if self.namespace.is_some() {
            format!("{}{{{stream}}}", self.prefix)
        } else {
            stream.to_owned()
        }
    }

    /// The stream name of a stream key of this layout, if it is one.
    pub fn logical<'k>(&self, key: &'k str) -> Option<&'k str> {
        if self.namespace.is_some() {
            key.strip_prefix(self.prefix.as_str())?
                .strip_prefix('{')?
                .strip_suffix('}')
                .filter(|s| !s.contains(['{', '}']))
        } else {
            (!key.contains(['{', '}'])).then_some(key)
        }
    }

    fn owned_by_stream(&self, prefix: &str, stream: &str, rest: &[&str]) -> String {
        let mut key = format!("{}{prefix}:{{{stream}}}", self.prefix);
        for part in rest {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// The schedule (a sorted set in Redis) of a group's retries for one
    /// stream. The hash tag is the stream's name, so stream, schedule and
    /// ready stream share one Redis Cluster slot.
    pub fn retry_schedule(&self, stream: &str, group: &str) -> String {
        self.owned_by_stream(&self.retry_prefix, stream, &["schedule", group])
    }

    /// The private stream a group reads its due retries of one stream from.
    pub fn retry_ready(&self, stream: &str, group: &str) -> String {
        self.owned_by_stream(&self.retry_prefix, stream, &["ready", group])
    }

    /// The dead-letter stream for entries that came from `stream`.
    pub fn dlq(&self, stream: &str) -> String {
        match self.dlq_layout {
            DlqLayout::Shared => self.stream(&self.dlq_prefix),
            DlqLayout::PerStream => self.owned_by_stream(&self.dlq_prefix, stream, &[]),
        }
    }

    /// The beginning every per-stream dead-letter key shares
    /// (`[ns:]<dlq_prefix>:{`), to find them all by prefix.
    ///
    /// ```
    /// use streams_core::{DlqConfig, DlqLayout, KeyLayout, RetryConfig};
    ///
    /// let dlq = DlqConfig::default().with_layout(DlqLayout::PerStream);
    /// let keys = KeyLayout::new(Some("t1"), &dlq, &RetryConfig::default(), "xnai:groups").unwrap();
    /// assert_eq!(keys.dlq_key_prefix(), "t1:xnai:dlq:{");
    /// assert!(keys.dlq("s").starts_with(&keys.dlq_key_prefix()));
    /// ```
    pub fn dlq_key_prefix(&self) -> String {
        format!("{}{}:{{", self.prefix, self.dlq_prefix)
    }

    /// The key without this layout's namespace prefix (`ns:`), as shown to
    /// people; a key outside the namespace is returned as it is.
    pub fn unnamespaced<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(self.prefix.as_str()).unwrap_or(key)
    }

    /// The common beginning of every key of this layout (`ns:`, or empty
    /// without a namespace): where to look for its streams.
    pub fn namespace_prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a logical stream name is one of the layout's own (the
    /// registry, or the shared dead-letter stream) rather than a stream of
    /// messages.
    pub fn is_internal(&self, stream: &str) -> bool {
        stream == self.registry_name
            || stream == self.partitions_name
            || (self.dlq_is_shared() && stream == self.dlq_prefix)
    }

    /// Whether every source stream shares the one dead-letter stream.
    pub fn dlq_is_shared(&self) -> bool {
        self.dlq_layout == DlqLayout::Shared
    }

    /// The key that maps group names to their configuration.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The key that maps partitioned streams to their partition counts
    /// (`[ns:]{xnai:partitions}`, or `xnai:partitions` without a namespace;
    /// with a registry key `r` other than `xnai:groups`, `r:partitions` in
    /// its place; see [`PartitionedStream`](crate::PartitionedStream)).
    pub fn partitions(&self) -> &str {
        &self.partitions
    }

    /// The key readiness probes write a short-lived value at:
    /// `[ns:]xnai:probe:{}`. No other key of any layout can be it: its
    /// hash tag is empty, and every other key's is a stream name (never
    /// empty) or has none, and stream names have no braces.
    pub fn probe(&self) -> String {
        format!("{}xnai:probe:{{}}", self.prefix)
    }

    /// Why `stream` cannot be used as a stream name for `use_`, if it cannot:
    /// the registry's name is never a stream, and nothing but dead letters is
    /// sent to the shared dead-letter stream (groups may read it).
    pub fn reserved(&self, stream: &str, use_: StreamUse) -> Option<&'static str> {
        if stream == self.registry_name {
            return Some("reserved for the group registry");
        }
        if stream == self.partitions_name {
            return Some("reserved for the partition counts");
        }
        if use_ == StreamUse::Send && self.dlq_is_shared() && stream == self.dlq_prefix {
            return Some("reserved for the dead-letter queue: only dead letters are written to it");
        }
        None
    }

    /// Checks a stream name for `use_`: [`validate_name`], then [`reserved`](Self::reserved).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`].
    pub fn check_stream(&self, stream: &str, use_: StreamUse) -> Result<()> {
        validate_name("stream", stream)?;
        match self.reserved(stream, use_) {
            Some(reason) => Err(StreamError::InvalidName {
                kind: "stream",
                name: stream.to_owned(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// What a stream name is used for, for [`KeyLayout::reserved`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamUse {
    /// Sending messages to it.
    Send,
    /// Reading it through a consumer group.
    Read,
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

    fn layout(ns: Option<&str>, dlq: DlqLayout) -> KeyLayout {
        KeyLayout::new(
            ns,
            &DlqConfig::default().with_layout(dlq),
            &RetryConfig::default(),
            "xnai:groups",
        )
        .unwrap()
    }

    #[test]
    fn per_stream_dlq_shares_the_source_slot() {
        let keys = layout(None, DlqLayout::PerStream);
        assert_eq!(keys.dlq("xnai:alerts"), "xnai:dlq:{xnai:alerts}");
        assert_eq!(
            keys.retry_schedule("xnai:alerts", "g"),
            "xnai:retry:{xnai:alerts}:schedule:g"
        );
        assert_eq!(keys.logical("xnai:alerts"), Some("xnai:alerts"));
        let keys = layout(Some("ns"), DlqLayout::PerStream);
        assert_eq!(keys.dlq("s"), "ns:xnai:dlq:{s}");
    }

    #[test]
    fn namespace_is_validated() {
        for bad in ["bad ns", "a:b", ""] {
            assert!(
                KeyLayout::new(
                    Some(bad),
                    &DlqConfig::default(),
                    &RetryConfig::default(),
                    "xnai:groups"
                )
                .is_err(),
                "{bad:?}"
            );
        }
        let keys = layout(Some("ns"), DlqLayout::Shared);
        assert_eq!(keys.logical("ns:{s:t}"), Some("s:t"));
        assert_eq!(keys.logical("ns:s"), None);
        assert_eq!(keys.logical("other:{s}"), None);
        assert_eq!(keys.namespace(), Some("ns"));
        let bare = layout(None, DlqLayout::Shared);
        assert_eq!(bare.logical("a:b"), Some("a:b"));
        assert_eq!(bare.logical("xnai:retry:{a}:ready:g"), None);
    }

    #[test]
    fn reserved_names() {
        let keys = layout(Some("ns"), DlqLayout::Shared);
        assert!(keys.check_stream("xnai:groups", StreamUse::Read).is_err());
        assert!(keys.check_stream("xnai:dlq", StreamUse::Send).is_err());
        assert!(keys.check_stream("xnai:dlq", StreamUse::Read).is_ok());
        assert!(keys.check_stream("xnai:agent_bus", StreamUse::Send).is_ok());
        // With a stream of its own per source, the prefix is an ordinary name.
        let keys = layout(None, DlqLayout::PerStream);
        assert!(keys.check_stream("xnai:dlq", StreamUse::Send).is_ok());
    }

    /// Every key a layout makes for one (stream, group), with its kind.
    fn all_keys(keys: &KeyLayout, stream: &str, group: &str) -> Vec<(String, String)> {
        let kinds = [
            ("stream", keys.stream(stream)),
            ("schedule", keys.retry_schedule(stream, group)),
            ("ready", keys.retry_ready(stream, group)),
            ("dlq", keys.dlq(stream)),
            ("registry", keys.registry().to_owned()),
            ("probe", keys.probe()),
        ];
        kinds
            .into_iter()
            .map(|(kind, key)| (kind.to_owned(), key))
            .collect()
    }

    #[test]
    fn a_group_named_like_another_group_s_key_stays_apart() {
        for ns in [None, Some("ns")] {
            let keys = layout(ns, DlqLayout::PerStream);
            let mut all = std::collections::HashSet::new();
            for group in ["g", "g:ready", "g:schedule", "ready:g", "schedule:g"] {
                assert!(all.insert(keys.retry_schedule("s", group)), "{group}");
                assert!(all.insert(keys.retry_ready("s", group)), "{group}");
            }
            assert!(all.insert(keys.stream("s")));
            assert!(all.insert(keys.dlq("s")));
        }
    }

    mod injective {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        /// Segments that key layouts are built of: names derived from one
        /// another by them (`g` and `g:ready`, `ready:g`, ...) are where
        /// layouts collide.
        const PREFIXES: [&str; 5] = ["", "ready:", "schedule:", "xnai:retry:", "xnai:dlq:"];
        const SUFFIXES: [&str; 6] = ["", ":ready", ":schedule", ":dlq", ":x", ":{"];

        /// A name from a small alphabet, so generated names often meet.
        fn base() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[ab:]{1,3}").unwrap()
        }

        /// One name: a base with a prefix and a suffix from the key segments.
        fn name() -> impl Strategy<Value = String> {
            (0..PREFIXES.len(), base(), 0..SUFFIXES.len() - 1)
                .prop_map(|(p, b, s)| format!("{}{b}{}", PREFIXES[p], SUFFIXES[s]))
        }

        fn namespace() -> impl Strategy<Value = Option<String>> {
            proptest::option::of(proptest::string::string_regex("[ab.]{1,2}").unwrap())
        }

        /// Triples drawn from small pools of namespaces, streams and groups,
        /// each stream and group name derived from its pool's base by the
        /// key segments, so that triples often share a namespace and a
        /// stream and differ only in how their names nest.
        fn triples() -> impl Strategy<Value = Vec<(Option<String>, String, String)>> {
            use proptest::sample::Index;
            let pick = (
                any::<Index>(),
                (any::<Index>(), 0..PREFIXES.len(), 0..SUFFIXES.len()),
                (any::<Index>(), 0..PREFIXES.len(), 0..SUFFIXES.len()),
                proptest::option::of(any::<Index>()),
            );
            (
                proptest::collection::vec(namespace(), 1..3),
                proptest::collection::vec(base(), 1..3),
                proptest::collection::vec(base(), 1..3),
                proptest::collection::vec(pick, 2..16),
            )
                .prop_map(|(namespaces, streams, groups, picks)| {
                    let derive = |pool: &[String], (i, p, s): (Index, usize, usize)| {
                        format!("{}{}{}", PREFIXES[p], i.get(pool), SUFFIXES[s])
                    };
                    picks
                        .into_iter()
                        .map(|(n, stream, group, under)| {
                            // A stream may also be named like another
                            // namespace's key of it (`ns:stream`).
                            let mut stream = derive(&streams, stream);
                            if let Some(ns) = under.and_then(|i| i.get(&namespaces).clone()) {
                                stream = format!("{ns}:{stream}");
                            }
                            (n.get(&namespaces).clone(), stream, derive(&groups, group))
                        })
                        // Only valid names: braces are refused.
                        .filter(|(_, s, g)| {
                            validate_name("stream", s).is_ok() && validate_name("group", g).is_ok()
                        })
                        .collect()
                })
        }

        /// Checks that no key of `triples` belongs to two owners: distinct
        /// (namespace, stream, group) triples never share a key, unless
        /// both keys are one thing (the registry, the probe key, the shared
        /// dead-letter stream, a stream of the same namespace and name).
        fn keys_stay_apart(
            triples: &[(Option<String>, String, String)],
            dlq: DlqLayout,
        ) -> Result<(), TestCaseError> {
            let per_stream = dlq == DlqLayout::PerStream;
            // key -> (what it is, for whom)
            let mut owners: HashMap<String, (String, String)> = HashMap::new();
            for (ns, stream, group) in triples {
                let keys = layout(ns.as_deref(), dlq);
                if keys.reserved(stream, StreamUse::Send).is_some() {
                    continue;
                }
                for (kind, key) in all_keys(&keys, stream, group) {
                    // Who a key belongs to: the namespace for shared
                    // keys, plus the stream for stream-owned ones, plus
                    // the group for retry keys.
                    let owner = match kind.as_str() {
                        "registry" | "probe" => format!("{ns:?}"),
                        "dlq" if !per_stream => format!("{ns:?}"),
                        "stream" | "dlq" => format!("{ns:?}/{stream}"),
                        _ => format!("{ns:?}/{stream}/{group}"),
                    };
                    if let Some((k, o)) = owners.get(&key) {
                        prop_assert!(
                            *k == kind && *o == owner,
                            "`{key}` is {kind} of {owner} and {k} of {o}"
                        );
                    }
                    owners.insert(key, (kind, owner));
                }
            }
            Ok(())
        }

        /// Hostile names: any string at all (braces, colons, control
        /// characters, every kind of Unicode whitespace, empty, too long),
        /// and names built of the key layout's own segments.
        fn hostile() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[ab:{}\\- \t\r\n\\x00-\\x08\u{7f}\u{85}\u{a0}\u{200b}\u{2028}\u{3000}\u{feff}é日\u{1f600}]{0,6}",
                Just(String::new()),
                (500usize..530).prop_map(|n| "é".repeat(n / 2)),
                (500usize..530).prop_map(|n| ":".repeat(n)),
                (0..PREFIXES.len(), base(), 0..SUFFIXES.len())
                    .prop_map(|(p, b, s)| format!("{}{b}{}", PREFIXES[p], SUFFIXES[s])),
                base().prop_map(|b| format!("{{{b}}}")),
            ]
        }

        /// A refusal is `InvalidName` of the right kind, naming the name.
        fn refused_as(result: Result<()>, kind: &str, name: &str) -> Result<bool, TestCaseError> {
            match result {
                Ok(()) => Ok(false),
                Err(StreamError::InvalidName {
                    kind: k, name: n, ..
                }) => {
                    prop_assert_eq!(k, kind);
                    prop_assert_eq!(n.as_str(), name);
                    Ok(true)
                }
                Err(other) => Err(TestCaseError::fail(format!("{name:?}: {other:?}"))),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Distinct (namespace, stream, group) triples never share a
            /// key, unless both keys are one thing (the registry, the shared
            /// dead-letter stream, a stream of the same namespace and name).
            #[test]
            fn distinct_triples_never_share_a_key(
                triples in triples(),
                per_stream in any::<bool>(),
            ) {
                let dlq = if per_stream { DlqLayout::PerStream } else { DlqLayout::Shared };
                keys_stay_apart(&triples, dlq)?;
            }

            /// Any string as a namespace, stream or group name is either
            /// refused with `InvalidName`, or accepted, and then it has none
            /// of the characters the layout gives a meaning to, and the
            /// keys of the accepted triples never meet.
            #[test]
            fn hostile_names_are_refused_or_kept_apart(
                pool in proptest::collection::vec(hostile(), 1..6),
                picks in proptest::collection::vec(
                    (
                        proptest::option::of(any::<proptest::sample::Index>()),
                        any::<proptest::sample::Index>(),
                        any::<proptest::sample::Index>(),
                    ),
                    1..12,
                ),
                per_stream in any::<bool>(),
            ) {
                let dlq = if per_stream { DlqLayout::PerStream } else { DlqLayout::Shared };
                let mut accepted = Vec::new();
                for (ns, stream, group) in picks {
                    let ns = ns.map(|i| i.get(&pool).clone());
                    let (stream, group) = (stream.get(&pool).clone(), group.get(&pool).clone());
                    let ns_refused = match &ns {
                        Some(ns) => {
                            let built = KeyLayout::new(
                                Some(ns),
                                &DlqConfig::default().with_layout(dlq),
                                &RetryConfig::default(),
                                "xnai:groups",
                            );
                            refused_as(built.map(drop), "namespace", ns)?
                        }
                        None => false,
                    };
                    let keys = layout(None, dlq);
                    let stream_refused =
                        refused_as(keys.check_stream(&stream, StreamUse::Read), "stream", &stream)?;
                    let group_refused = refused_as(validate_name("group", &group), "group", &group)?;
                    for (name, refused) in [
                        (ns.as_deref().unwrap_or("ns"), ns_refused),
                        (stream.as_str(), stream_refused),
                        (group.as_str(), group_refused),
                    ] {
                        if !refused {
                            prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES);
                            prop_assert!(
                                !name.contains(['{', '}'])
                                    && !name.chars().any(|c| c.is_control() || c.is_whitespace()),
                                "{:?} was accepted",
                                name
                            );
                        }
                    }
                    if ns.as_ref().is_some_and(|ns| ns.contains(':')) {
                        prop_assert!(ns_refused, "a namespace with `:` was accepted");
                    }
                    if !(ns_refused || stream_refused || group_refused) {
                        accepted.push((ns, stream, group));
                    }
                }
                keys_stay_apart(&accepted, dlq)?;
            }

            /// No valid stream name reaches an internal key of any layout.
            #[test]
            fn stream_names_never_reach_internal_keys(
                ns in namespace(), other_ns in namespace(),
                stream in name(), other in name(), group in name(),
            ) {
                let keys = layout(ns.as_deref(), DlqLayout::PerStream);
                let theirs = layout(other_ns.as_deref(), DlqLayout::PerStream);
                prop_assume!(theirs.reserved(&other, StreamUse::Send).is_none());
                let user = theirs.stream(&other);
                for (kind, key) in all_keys(&keys, &stream, &group) {
                    if kind != "stream" {
                        prop_assert_ne!(&key, &user, "{} reaches a {} key", other, kind);
                    }
                }
            }
        }
    }
}
