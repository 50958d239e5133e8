//! `xnai-streams send`: one message from fields or JSON, or many from a
//! file of JSON lines.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};
use serde_json::{Map, Value};
use xnai_streams::{Durability, StreamError};

use crate::output::{Failure, Out, progress};
use crate::target::{CLI_CONSUMER, Target};

/// Messages per round trip when sending a file.
const BATCH: usize = 100;

/// Options of `xnai-streams send`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("durability").multiple(true)))]
#[command(group(ArgGroup::new("routing")))]
pub(crate) struct SendArgs {
    /// The stream to send to.
    stream: String,
    /// The payload as fields: `key=value` (a string) or `key:=<json>` (any
    /// JSON value: `n:=3`, `tags:='["a","b"]'`).
    #[arg(value_name = "FIELD", conflicts_with_all = ["json", "file"])]
    fields: Vec<String>,
    /// The payload as a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    json: Option<String>,
    /// A file of JSON objects, one per line (`-` for standard input); every
    /// line is checked before anything is sent.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Send to the partition of this key (a partitioned stream; see
    /// `partitions`): the same key always goes to the same partition.
    #[arg(long, value_name = "KEY", group = "routing")]
    key: Option<String>,
    /// Route each message by this field of its payload (a string, or an
    /// integer routed by its decimal text), which every message must have
    /// (with --file, every line).
    #[arg(long, value_name = "FIELD", group = "routing")]
    key_field: Option<String>,
    /// Send to the partitions in turn.
    #[arg(long, group = "routing")]
    round_robin: bool,
    /// Trim the stream to about this many entries.
    #[arg(long, value_name = "N")]
    max_len: Option<u64>,
    /// Wait until this many replicas have each message (`WAIT`); fails
    /// with exit code 3, after printing the ids written, when fewer
    /// confirm in time.
    #[arg(long, value_name = "N", group = "durability")]
    replicas: Option<u32>,
    /// Also wait until the messages are fsynced to the append-only file,
    /// on the server and on those replicas (`WAITAOF`, Redis 7.2+).
    #[arg(long, group = "durability")]
    fsync: bool,
    /// How long to wait for those confirmations (default 1000).
    #[arg(long, value_name = "MS", requires = "durability")]
    durable_timeout: Option<u64>,
}

impl SendArgs {
    /// The durability asked for, if any.
    fn durability(&self) -> Option<Durability> {
        if self.replicas.is_none() && !self.fsync {
            return None;
        }
        Some(
            Durability::replicas(self.replicas.unwrap_or(0))
                .with_fsync(self.fsync)
                .with_timeout(Duration::from_millis(self.durable_timeout.unwrap_or(1000))),
        )
    }
}

/// Parses `key=value` and `key:=<json>` fields into a JSON object.
fn parse_fields(fields: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut map = Map::new();
    for field in fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(Failure::new(format!(
                "malformed field `{field}`: expected key=value or key:=<json>"
            )));
        };
        let (key, value) = match key.strip_suffix(':') {
            Some(key) => {
                let value = serde_json::from_str(value)
                    .map_err(|e| Failure::new(format!("invalid JSON in field `{field}`: {e}")))?;
                (key, value)
            }
            None => (key, Value::String(value.to_owned())),
        };
        if key.is_empty() {
            return Err(Failure::new(format!(
                "malformed field `{field}`: the key is empty"
            )));
        }
        if map.insert(key.to_owned(), value).is_some() {
            return Err(Failure::new(format!("field `{key}` is given twice")));
        }
    }
    Ok(map)
}

/// Where the messages go.
enum Route {
    /// To the stream itself.
    Stream,
    /// To the partitions in turn.
    RoundRobin,
    /// To the partition of each message's key, in order.
    Keys(Vec<String>),
}

impl Route {
    fn of(args: &SendArgs, payloads: &[Value]) -> Result<Self, Failure> {
        if args.round_robin {
            return Ok(Self::RoundRobin);
        }
        if let Some(key) = &args.key {
            return Ok(Self::Keys(vec![key.clone(); payloads.len()]));
        }
        let Some(name) = &args.key_field else {
            return Ok(Self::Stream);
        };
        payloads
            .iter()
            .enumerate()
            .map(|(n, payload)| match payload.get(name) {
                Some(Value::String(key)) => Ok(key.clone()),
                // Integers only: a fraction's text differs between
                // languages (`1e2`, `100.0`), and so would its partition.
                Some(Value::Number(key)) if key.is_i64() || key.is_u64() => Ok(key.to_string()),
                _ => Err(Failure::new(format!(
                    "message {} has no string or integer field `{name}` to route by; nothing sent",
                    n + 1
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Keys)
    }
}

/// A JSON object, or why not.
fn object(text: &str, what: &str) -> Result<Value, Failure> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Failure::new(format!("invalid JSON {what}: {e}")))?;
    if !value.is_object() {
        return Err(Failure::new(format!("{what} is not a JSON object")));
    }
    Ok(value)
}

/// The payloads of a file of JSON lines; blank lines are skipped.
fn read_lines(path: &PathBuf) -> Result<Vec<Value>, Failure> {
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Failure::new(format!("cannot read `{}`: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| object(line, &format!("on line {} of `{}`", n + 1, path.display())))
        .collect()
}

pub(crate) async fn run(args: SendArgs, target: &Target) -> Result<u8, Failure> {
    let out = Out::new(false);
    let payloads = match (&args.file, &args.json) {
        (Some(path), _) => read_lines(path)?,
        (None, Some(text)) => vec![object(text, "payload")?],
        (None, None) if args.fields.is_empty() => {
            return Err(Failure::new(
                "nothing to send: give key=value fields, --json '{...}' or --file",
            ));
        }
        (None, None) => vec![Value::Object(parse_fields(&args.fields)?)],
    };
    let mut config = target.config(CLI_CONSUMER);
    if let Some(durability) = args.durability() {
        config = config.with_durability(durability);
    }
    let manager = target.manager_with(config).await?;
    let mut ids = Vec::with_capacity(payloads.len());
    let route = Route::of(&args, &payloads)?;
    let mut failed = None;
    if payloads.len() == 1 {
        let payload = payloads.into_iter().next().unwrap_or_default();
        let sent = match &route {
            Route::Stream => {
                manager
                    .send_message(&args.stream, payload, args.max_len)
                    .await
            }
            Route::RoundRobin => {
                manager
                    .send_round_robin(&args.stream, payload, args.max_len)
                    .await
            }
            Route::Keys(keys) => {
                let key = keys.first().map_or("", String::as_str);
                manager
                    .send_keyed(&args.stream, key, payload, args.max_len)
                    .await
            }
        };
        match sent {
            Ok(id) => ids.push(id),
            Err(e) => failed = Some(e),
        }
    } else {
        let bar = progress(payloads.len() as u64, "sending");
        for (n, chunk) in payloads.chunks(BATCH).enumerate() {
            let sent = match &route {
                Route::Stream => {
                    manager
                        .send_batch(&args.stream, chunk.to_vec(), args.max_len)
                        .await
                }
                Route::RoundRobin => {
                    let mut sent = Vec::with_capacity(chunk.len());
                    let mut error = None;
                    for payload in chunk {
                        match manager
                            .send_round_robin(&args.stream, payload.clone(), args.max_len)
                            .await
                        {
                            Ok(id) => sent.push(id),
                            Err(e) => {
                                error = Some(e);
                                break;
                            }
                        }
                    }
                    match error {
                        // What was sent before the failure is printed too.
                        Some(e) => {
                            ids.extend(sent);
                            Err(e)
                        }
                        None => Ok(sent),
                    }
                }
                Route::Keys(keys) => {
                    let keyed = keys
                        .iter()
                        .skip(n * BATCH)
                        .cloned()
                        .zip(chunk.iter().cloned())
                        .collect();
                    manager
                        .send_batch_keyed(&args.stream, keyed, args.max_len)
                        .await
                }
            };
            match sent {
                Ok(sent) => {
                    bar.inc(sent.len() as u64);
                    ids.extend(sent);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        bar.finish_and_clear();
    }
    // Written but not confirmed durable: the ids are still printed, so
    // that what is on the server can be found.
    let unconfirmed = matches!(failed, Some(StreamError::DurabilityNotConfirmed { .. }));
    if let Some(StreamError::DurabilityNotConfirmed { ids: written, .. }) = &failed {
        ids.extend(written.iter().cloned());
    }
    // One id per line, in order: easy to read and to script. Printed
    // before anything else can fail.
    for id in &ids {
        out.line(id)?;
    }
    let closed = manager.close().await;
    match failed {
        // Exit code 3: sent, but not as durably as asked.
        Some(e) if unconfirmed => Err(Failure::from(e).with_code(3)),
        Some(e) => Err(e.into()),
        None => closed.map(|()| 0).map_err(Failure::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_an_object() {
        let fields: Vec<String> = ["agent=cline-1", "n:=3", "tags:=[\"a\"]", "eq=a=b"]
            .map(String::from)
            .to_vec();
        let map = parse_fields(&fields).unwrap();
        assert_eq!(
            Value::Object(map),
            serde_json::json!({"agent": "cline-1", "n": 3, "tags": ["a"], "eq": "a=b"})
        );
        for bad in ["novalue", "=x", ":=1", "n:=nope"] {
            assert!(parse_fields(&[bad.to_owned()]).is_err(), "{bad}");
        }
        let twice = ["a=1".to_owned(), "a=2".to_owned()];
        assert!(parse_fields(&twice).is_err());
    }
}
