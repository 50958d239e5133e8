//! `xnai-streams work GROUP --exec CMD`: a worker whose handler is a
//! command, so a shell script or a program in any language takes part with
//! the full policy (leases, retries with backoff, the dead-letter queue,
//! claims, graceful shutdown).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use xnai_streams::runner::{ConsumeOptions, Job, Outcome};
use xnai_streams::{ConsumerGroupConfig, StreamError, StreamManagerExt};

use crate::output::{Failure, Format, one_line, parse_duration};
use crate::target::Target;

/// The command succeeded: acknowledge.
const ACK: i32 = 0;
/// `EX_DATAERR`: the message is bad; dead-letter it now.
const REJECT: i32 = 65;
/// `EX_TEMPFAIL`: try again after the group's backoff.
const RETRY: i32 = 75;

/// How the command's exit status settles a message; written into `--help`.
const EXIT_STATUS: &str = "\
The command gets the message as one line of JSON on stdin (id, stream, data,
timestamp, retry_count, ...) and XNAI_MESSAGE_ID, XNAI_STREAM, XNAI_GROUP,
XNAI_RETRY_COUNT and XNAI_DELIVERIES in its environment. Its stdout is the
worker's; its stderr is passed on, and its last line is the reason recorded.
Its exit status settles the message:
  0    acknowledge
  75   retry after the group's backoff (EX_TEMPFAIL)
  65   dead-letter now, never retried (EX_DATAERR)
  any other status, or killed: a failure, retried with backoff and
       dead-lettered past the group's retry limit
The worker stops on Ctrl-C or SIGTERM: running commands get --grace to end,
messages fetched but not started are handed back, and a summary is printed.";

/// Options of `xnai-streams work`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS)]
pub(crate) struct WorkArgs {
    /// The consumer group to work for.
    group: String,
    /// Create the group over this stream (repeat for several) if it does
    /// not exist yet; an existing group is left as it is. Without it, the
    /// group must exist.
    #[arg(long = "stream", value_name = "STREAM")]
    streams: Vec<String>,
    /// The command to run for each message, through `sh -c`.
    #[arg(long, value_name = "CMD")]
    exec: String,
    /// Most commands running at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// This worker's consumer name. Give each worker a stable, unique one.
    /// Default: XNAI_CONSUMER_ID, else `work-<pid>`.
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// A command running longer is killed and its message retried.
    #[arg(long, value_parser = parse_duration, default_value = "15m", value_name = "DURATION")]
    timeout: Duration,
    /// After Ctrl-C or SIGTERM, how long running commands may finish.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION")]
    grace: Duration,
    #[command(flatten)]
    format: Format,
}

pub(crate) async fn run(args: WorkArgs, target: &Target) -> Result<u8, Failure> {
    if args.concurrency == 0 {
        return Err(Failure::new("--concurrency must be at least 1"));
    }
    let out = args.format.out();
    let consumer = args
        .consumer
        .clone()
        .or_else(|| std::env::var("XNAI_CONSUMER_ID").ok())
        .unwrap_or_else(|| format!("work-{}", std::process::id()));
    let manager = target.manager_as(&consumer).await?;
    match manager.group_config(&args.group).await {
        Ok(_) => {}
        Err(StreamError::GroupNotFound { .. }) if !args.streams.is_empty() => {
            let config = ConsumerGroupConfig::new(args.group.clone(), args.streams.clone());
            manager.create_consumer_group(&config).await?;
        }
        // An unknown group is a bad command line, not a worker that idles.
        Err(e) => return Err(e.into()),
    }
    let command: Arc<str> = Arc::from(args.exec.as_str());
    let group: Arc<str> = Arc::from(args.group.as_str());
    eprintln!(
        "working for group `{}` as `{consumer}`: {} (Ctrl-C to stop)",
        args.group, args.exec
    );
    let options = ConsumeOptions::default()
        .concurrency(args.concurrency)
        .hard_timeout(Some(args.timeout))
        .grace(args.grace);
    let summary = manager
        .consume(&args.group, move |job: Job<Value>| {
            let (command, group) = (Arc::clone(&command), Arc::clone(&group));
            async move { run_command(&command, &group, &job).await }
        })
        .options(options)
        .until_signal()
        .await?;
    if out.json {
        out.json(&summary)?;
    } else {
        out.line(format_args!("stopped: {summary}"))?;
    }
    Ok(0)
}

/// Runs the command for one message; its exit status is the outcome.
async fn run_command(command: &str, group: &str, job: &Job<Value>) -> Result<Outcome, String> {
    let message = &job.message;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("XNAI_MESSAGE_ID", &message.id)
        .env("XNAI_STREAM", &message.stream)
        .env("XNAI_GROUP", group)
        .env("XNAI_RETRY_COUNT", message.retry_count.to_string())
        .env("XNAI_DELIVERIES", job.deliveries().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        // A command outliving its timeout or the grace period is killed.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = message.to_json().to_string();
        line.push('\n');
        // A command that does not read its input is no failure.
        let _ = stdin.write_all(line.as_bytes()).await;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for `{command}` failed: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.is_empty() {
        eprint!("{stderr}");
    }
    let said = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(one_line);
    match output.status.code() {
        Some(ACK) => Ok(Outcome::Ack),
        Some(RETRY) => Ok(Outcome::Retry {
            delay: None,
            reason: Some(said.unwrap_or_else(|| "the command asked for a retry".to_owned())),
        }),
        Some(REJECT) => {
            Ok(Outcome::dead_letter(said.unwrap_or_else(|| {
                format!("the command rejected it (exit {REJECT})")
            })))
        }
        status => {
            let how = status.map_or_else(
                || "was killed by a signal".to_owned(),
                |code| format!("exited with status {code}"),
            );
            Err(match said {
                Some(said) => format!("the command {how}: {said}"),
                None => format!("the command {how}"),
            })
        }
    }
}
