//! `xnai-streams streams`: the streams there are; `xnai-streams
//! partitions`: the partitioned ones, and giving a stream partitions.

use std::collections::BTreeMap;

use clap::Args;
use serde::Serialize;
use xnai_streams::{PartitionedStream, StreamInfo, split_partition};

use crate::output::{Failure, Format, Out, table};
use crate::target::Target;

/// Options of `xnai-streams streams`.
#[derive(Debug, Args)]
pub(crate) struct StreamsArgs {
    /// List each partition of a partitioned stream on its own row (by
    /// default a partitioned stream is one row, its lengths added up).
    #[arg(long)]
    partitions: bool,
    #[command(flatten)]
    format: Format,
}

/// A logical stream: its partitions' streams taken together.
#[derive(Debug, Default, Serialize)]
struct Logical {
    name: String,
    partitions: usize,
    length: u64,
    groups: Vec<String>,
}

/// The streams grouped by logical stream (`jobs`, `jobs#1`, ... are one),
/// sorted by name.
fn logical(streams: &[StreamInfo], declared: &[PartitionedStream]) -> Vec<Logical> {
    let mut by_name: BTreeMap<&str, Logical> = BTreeMap::new();
    for s in streams {
        // Only the partitions of a declared stream are taken in: an
        // undeclared `x#2` is a stream of its own.
        let base = match split_partition(&s.name) {
            (base, p)
                if declared
                    .iter()
                    .any(|d| d.name() == base && p < d.partitions()) =>
            {
                base
            }
            _ => s.name.as_str(),
        };
        let row = by_name.entry(base).or_insert_with(|| Logical {
            name: base.to_owned(),
            ..Logical::default()
        });
        row.partitions += 1;
        row.length += s.length;
        for g in &s.groups {
            if !row.groups.contains(g) {
                row.groups.push(g.clone());
            }
        }
    }
    // A partition with nothing in it and no group yet has no key: the
    // declared count says how many there are.
    for p in declared {
        let row = by_name.entry(p.name()).or_insert_with(|| Logical {
            name: p.name().to_owned(),
            ..Logical::default()
        });
        row.partitions = row.partitions.max(p.partitions() as usize);
    }
    by_name.into_values().collect()
}

pub(crate) async fn run(args: StreamsArgs, target: &Target) -> Result<u8, Failure> {
    let out = args.format.out();
    let manager = target.manager().await?;
    let mut streams = manager.list_streams().await?;
    // By stream, each stream's partitions in order.
    streams.sort_by(|a, b| split_partition(&a.name).cmp(&split_partition(&b.name)));
    if args.partitions {
        if out.json {
            out.json(&streams)?;
            return Ok(0);
        }
        if streams.is_empty() {
            out.line("no streams")?;
            return Ok(0);
        }
        let mut t = table(&["STREAM", "LENGTH", "GROUPS"]);
        for s in &streams {
            t.add_row(vec![
                s.name.clone(),
                s.length.to_string(),
                s.groups.join(", "),
            ]);
        }
        out.table(&t)?;
        return Ok(0);
    }
    let rows = logical(&streams, &manager.partitioned_streams().await?);
    if out.json {
        out.json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        out.line("no streams")?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "PARTITIONS", "LENGTH", "GROUPS"]);
    for s in &rows {
        t.add_row(vec![
            s.name.clone(),
            s.partitions.to_string(),
            s.length.to_string(),
            s.groups.join(", "),
        ]);
    }
    out.table(&t)?;
    Ok(0)
}

/// Options of `xnai-streams partitions`.
#[derive(Debug, Args)]
pub(crate) struct PartitionsArgs {
    /// The stream to give partitions to (with COUNT), or to show.
    stream: Option<String>,
    /// How many partitions it should have: partitions are only ever added,
    /// and every group that reads the stream is created on the new ones
    /// first.
    count: Option<u32>,
    #[command(flatten)]
    format: Format,
}

/// One partitioned stream, as printed.
#[derive(Debug, Serialize)]
struct Partitioned {
    name: String,
    partitions: u32,
    /// The length of each partition, in partition order.
    lengths: Vec<u64>,
}

pub(crate) async fn partitions(args: PartitionsArgs, target: &Target) -> Result<u8, Failure> {
    let out: Out = args.format.out();
    let manager = target.manager().await?;
    let declared = match (&args.stream, args.count) {
        (Some(stream), Some(count)) => vec![manager.declare_partitions(stream, count).await?],
        (Some(stream), None) => vec![manager.partitioned_stream(stream).await?],
        (None, Some(_)) => return Err(Failure::new("give the stream before the count")),
        (None, None) => manager.partitioned_streams().await?,
    };
    let listed = manager.list_streams().await?;
    let length = |name: &str| {
        listed
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.length)
    };
    let rows: Vec<Partitioned> = declared
        .iter()
        .map(|p| Partitioned {
            name: p.name().to_owned(),
            partitions: p.partitions(),
            lengths: p.streams().iter().map(|s| length(s)).collect(),
        })
        .collect();
    if out.json {
        out.json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        out.line("no partitioned streams")?;
        return Ok(0);
    }
    let mut t = table(&["STREAM", "PARTITIONS", "LENGTH", "PER PARTITION"]);
    for p in &rows {
        t.add_row(vec![
            p.name.clone(),
            p.partitions.to_string(),
            p.lengths.iter().sum::<u64>().to_string(),
            p.lengths
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    out.table(&t)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, length: u64, groups: &[&str]) -> StreamInfo {
        serde_json::from_value(serde_json::json!({
            "name": name, "length": length, "groups": groups,
        }))
        .unwrap()
    }

    #[test]
    fn partitions_add_up_to_their_stream() {
        let rows = logical(
            &[
                info("jobs", 3, &["g"]),
                info("jobs#1", 4, &["g", "h"]),
                info("alerts", 1, &[]),
                info("jobs#2", 5, &["g"]),
                info("other#2", 1, &[]),
            ],
            &[
                PartitionedStream::new("jobs", 4).unwrap(),
                PartitionedStream::new("empty", 2).unwrap(),
            ],
        );
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.partitions, r.length, r.groups.join(",")))
            .collect();
        assert_eq!(
            rows,
            [
                ("alerts", 1, 1, String::new()),
                ("empty", 2, 0, String::new()),
                ("jobs", 4, 12, "g,h".to_owned()),
                ("other#2", 1, 1, String::new())
            ]
        );
    }
}
