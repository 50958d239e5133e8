//! The `xnai-streams` command.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Streams for multi-agent coordination.
#[derive(Debug, Parser)]
#[command(name = "xnai-streams", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a team of agents on one stream: tasks are shared, failures retried
    /// with backoff, a poison task dead-lettered, an agent stops mid-work and
    /// its tasks are claimed by another. Runs in-process unless --redis is given.
    Demo(demo::DemoArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
