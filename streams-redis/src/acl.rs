//! What a Redis ACL user needs to run xnai-streams: [`COMMANDS`] and
//! [`AclRules`]. `docs/security.md` explains them.

use std::fmt;

use streams_core::{Result, validate_namespace};

use crate::commands::glob_escape;

/// Every command the backend sends, in Redis ACL form (`xgroup|create` is
/// the `CREATE` subcommand of `XGROUP`), sorted: the plain commands and
/// those its Lua scripts call. Connecting needs nothing more (`AUTH` and
/// `HELLO` need no permission; the redis crate's `CLIENT SETINFO` may be
/// refused, it ignores the answer). A URL that names a database other
/// than 0 also needs `select`.
///
/// A unit test reads the backend's sources and scripts and checks that
/// this list is exactly what they send.
pub const COMMANDS: [&str; 36] = [
    "evalsha",
    "exists",
    "hget",
    "hgetall",
    "hset",
    "info",
    "ping",
    "scan",
    "script|load",
    "set",
    "time",
    "type",
    "unlink",
    "wait",
    "xack",
    "xadd",
    "xclaim",
    "xdel",
    "xgroup|create",
    "xgroup|delconsumer",
    "xgroup|destroy",
    "xinfo|consumers",
    "xinfo|groups",
    "xinfo|stream",
    "xlen",
    "xpending",
    "xrange",
    "xread",
    "xreadgroup",
    "xrevrange",
    "xtrim",
    "zadd",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zrem",
];

/// Commands the backend sends only to servers new enough to have them,
/// with the oldest such version. Older servers refuse to name them in an
/// ACL rule, so they are not in [`COMMANDS`] and [`AclRules`] does not
/// grant them: a user that needs one adds it (`+waitaof`, for durable
/// sends with fsync on Redis 7.2 and newer).
pub const NEWER_COMMANDS: [(&str, &str); 1] = [("waitaof", "7.2.0")];

/// The Redis ACL rules of a user that runs xnai-streams managers and may
/// do nothing else: keys of one namespace (or of every namespace starting
/// with a prefix), no Pub/Sub channels, and exactly the commands the
/// backend sends ([`COMMANDS`]).
///
/// Its `Display` is the rules as `ACL SETUSER` takes them, after the user's
/// name, state and password; `docs/security.md` explains each part and
/// what such a user can and cannot do.
///
/// ```
/// use streams_redis::AclRules;
///
/// let rules = AclRules::namespace("t1")?;
/// assert_eq!(rules.key_pattern(), "t1:*");
/// let line = format!("ACL SETUSER xnai-t1 reset on >a-long-secret {rules}");
/// assert!(line.contains(" resetkeys ~t1:* resetchannels -@all +evalsha "));
/// assert!(line.ends_with(" +zrem"));
/// # Ok::<(), streams_core::StreamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRules {
    /// The key pattern, glob characters of the namespace escaped.
    keys: String,
}

impl AclRules {
    /// For managers whose namespace is `namespace`
    /// ([`ManagerConfig::namespace`](streams_core::ManagerConfig::namespace)):
    /// every key they use, whatever its prefixes, starts with
    /// `<namespace>:`, so the key pattern is `<namespace>:*` (with the glob
    /// characters `* ? [ ] \` of the name escaped).
    ///
    /// # Errors
    /// [`StreamError::InvalidName`](streams_core::StreamError::InvalidName)
    /// for a name that is not a valid namespace.
    pub fn namespace(namespace: &str) -> Result<Self> {
        validate_namespace(namespace)?;
        Ok(Self {
            keys: format!("{}:*", glob_escape(namespace)),
        })
    }

    /// For managers of every namespace that starts with `prefix` (a tenant
    /// whose namespaces are `<prefix>...`, or a test suite with one
    /// namespace per case): the key pattern is `<prefix>*`.
    ///
    /// # Errors
    /// [`StreamError::InvalidName`](streams_core::StreamError::InvalidName)
    /// for a prefix that could not begin a namespace.
    pub fn namespace_prefix(prefix: &str) -> Result<Self> {
        validate_namespace(prefix)?;
        Ok(Self {
            keys: format!("{}*", glob_escape(prefix)),
        })
    }

    /// The key pattern, as it follows `~` in the rules.
    pub fn key_pattern(&self) -> &str {
        &self.keys
    }

    /// The rules, one `ACL SETUSER` argument each: `resetkeys`, the key
    /// pattern, `resetchannels`, `-@all`, then `+<command>` for each of
    /// [`COMMANDS`].
    pub fn rules(&self) -> Vec<String> {
        let mut rules = vec![
            "resetkeys".to_owned(),
            format!("~{}", self.keys),
            "resetchannels".to_owned(),
            "-@all".to_owned(),
        ];
        rules.extend(COMMANDS.iter().map(|c| format!("+{c}")));
        rules
    }
}

/// The rules separated by spaces.
impl fmt::Display for AclRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rules().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::scripts::{ALL, CONTAINERS};

    /// The commands a Rust source builds with `redis::cmd("...")`, or with
    /// `Cmd::with_capacity(..)` and a first `.arg("...")`, with the
    /// subcommand (the next string literal) of container commands.
    fn rust_commands(source: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let call = "redis::cmd(\"";
        let sized = "Cmd::with_capacity(";
        let first_arg = ".arg(\"";
        let starts = source
            .match_indices(call)
            .map(|(at, _)| at + call.len())
            .chain(source.match_indices(sized).filter_map(|(at, _)| {
                let after = &source[at..];
                after.find(first_arg).map(|arg| at + arg + first_arg.len())
            }));
        for start in starts {
            let rest = &source[start..];
            let Some((name, after)) = rest.split_once('"') else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if CONTAINERS.contains(&name.as_str()) {
                let sub = after
                    .split('"')
                    .nth(1)
                    .expect("a container command has its subcommand next");
                found.insert(format!("{name}|{}", sub.to_ascii_lowercase()));
            } else {
                found.insert(name);
            }
        }
        found
    }

    #[test]
    fn commands_are_exactly_what_the_backend_sends() {
        let mut sent = BTreeSet::new();
        for source in [
            include_str!("backend.rs"),
            include_str!("commands.rs"),
            include_str!("read.rs"),
            include_str!("scripts.rs"),
        ] {
            sent.extend(rust_commands(source));
        }
        for lua in ALL {
            sent.extend(lua.commands());
        }
        for (newer, _) in NEWER_COMMANDS {
            assert!(
                sent.remove(newer),
                "{newer} is listed as newer but never sent"
            );
        }
        let listed: BTreeSet<String> = COMMANDS.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(
            listed.difference(&sent).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "granted but never sent"
        );
        assert_eq!(
            sent.difference(&listed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "sent but not granted"
        );
        let mut sorted = COMMANDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, COMMANDS, "kept sorted");
    }

    #[test]
    fn rules_confine_keys_and_commands() {
        let rules = AclRules::namespace("t1").unwrap();
        let text = rules.to_string();
        assert!(
            text.starts_with("resetkeys ~t1:* resetchannels -@all +evalsha +exists +hget "),
            "{text}"
        );
        assert_eq!(rules.rules().len(), 4 + COMMANDS.len());
        assert!(!text.contains("@all +@") && !text.contains("allkeys"));
        assert_eq!(
            AclRules::namespace_prefix("xt-").unwrap().key_pattern(),
            "xt-*"
        );
        // Glob characters of a namespace match only themselves.
        assert_eq!(
            AclRules::namespace("a*b?[c]\\").unwrap().key_pattern(),
            "a\\*b\\?\\[c\\]\\\\:*"
        );
        for bad in ["", "a:b", "a b", "{x}"] {
            assert!(AclRules::namespace(bad).is_err(), "{bad:?}");
            assert!(AclRules::namespace_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
