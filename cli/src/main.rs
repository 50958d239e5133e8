//! The `xnai-streams` command: the demo, and the operator's tools for a
//! Redis that xnai-streams uses.

mod claim;
mod consumers;
mod dashboard;
mod demo;
mod dlq;
mod groups;
mod output;
mod send;
mod stats;
mod streams;
mod tail;
mod target;
mod work;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Failure;

/// How the command ends; written into `--help` and the README.
const EXIT_CODES: &str = "\
Exit codes:
  0  success; for `health`: healthy
  1  an error (bad input, unknown group, no such entry, Redis unreachable);
     for `health`: degraded
  2  the command line is wrong; for `health`: unhealthy (unreachable included)
  3  `send --replicas`/`--fsync`: written (ids printed), not confirmed durable

Every command but `demo` and `send` takes --json and prints one JSON
document (`tail`: one JSON object per line). Errors are one line on stderr,
starting with `error:`.";

/// Streams for multi-agent coordination: a demo, and tools to look at and
/// operate the streams, groups and dead-letter queue on a Redis server.
#[derive(Debug, Parser)]
#[command(name = "xnai-streams", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    target: target::Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a team of agents on one stream: tasks are shared, failures retried
    /// with backoff, a poison task dead-lettered, an agent stops mid-work and
    /// its tasks are claimed by another. Runs in-process unless --redis is given.
    Demo(demo::DemoArgs),
    /// Send a message: `key=value` fields (`key:=<json>` for a JSON value),
    /// --json '{...}', or --file with one JSON object per line. Prints the
    /// new ids.
    Send(send::SendArgs),
    /// Follow a stream's new entries without consuming them (no group reads
    /// them); with --group, show what that group has done with each. Ctrl-C
    /// stops.
    Tail(tail::TailArgs),
    /// List the streams, with their lengths and groups; a partitioned
    /// stream is one row unless --partitions is given.
    Streams(streams::StreamsArgs),
    /// List the partitioned streams, show one (`partitions STREAM`), or give
    /// a stream partitions (`partitions STREAM COUNT`).
    Partitions(streams::PartitionsArgs),
    /// List the registered consumer groups and their state on each stream.
    Groups(output::Format),
    /// List a group's consumers, or remove idle ones (`consumers prune`).
    Consumers(consumers::ConsumersArgs),
    /// List a group's pending entries: who holds what, for how long.
    Pending(groups::PendingArgs),
    /// Streams, groups and the dead-letter queue at a glance.
    Stats(output::Format),
    /// Check the server and every group; the exit code tells the state.
    #[command(
        after_help = "Exit codes: 0 healthy, 1 degraded, 2 unhealthy (the server \
        unreachable included); a bad command line or bad option values give 1 or 2 \
        with an error line."
    )]
    Health(output::Format),
    /// Look at and operate the dead-letter queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Take over a group's idle entries (consumers that died): poison
    /// messages go to the dead-letter queue, the others are handed back,
    /// claimable at once by the group's workers.
    Claim(claim::ClaimArgs),
    /// Serve a web dashboard of the streams, groups and dead-letter queue
    /// (and a JSON API, /metrics and /healthz), read-only unless
    /// --allow-writes is given. Ctrl-C stops it.
    Dashboard(dashboard::DashboardArgs),
    /// Work for a group: run a command for each message (its JSON on
    /// stdin) and settle the message by the command's exit status, with
    /// leases, retries, the dead-letter queue and graceful shutdown.
    Work(work::WorkArgs),
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let target = cli.target;
    match cli.command {
        Command::Demo(args) => Ok(demo::run(args, &target).await.map(|()| 0)?),
        Command::Send(args) => send::run(args, &target).await,
        Command::Tail(args) => tail::run(args, &target).await,
        Command::Streams(args) => streams::run(args, &target).await,
        Command::Partitions(args) => streams::partitions(args, &target).await,
        Command::Groups(format) => groups::run(&target, format.out()).await,
        Command::Consumers(args) => consumers::run(args, &target).await,
        Command::Pending(args) => groups::pending(args, &target).await,
        Command::Stats(format) => stats::stats(&target, format.out()).await,
        Command::Health(format) => stats::health(&target, format.out()).await,
        Command::Dlq(command) => dlq::run(command, &target).await,
        Command::Claim(args) => claim::run(args, &target).await,
        Command::Work(args) => work::run(args, &target).await,
        Command::Dashboard(args) => dashboard::run(args, &target).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "error: internal error: {}",
            output::one_line(&info.to_string())
        );
    }));
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.report(),
    }
}
