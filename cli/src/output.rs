//! What commands print: tables or JSON on stdout, progress and errors on
//! stderr, and the parsing of times and durations they share.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use xnai_streams::StreamError;

/// Why a command failed: one line for stderr, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: u8,
    /// The server could not be reached (connection refused, timed out).
    pub(crate) unreachable: bool,
}

impl Failure {
    /// A failure with exit code 1.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
            unreachable: false,
        }
    }

    /// A failure with its own exit code.
    pub(crate) fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// What went wrong.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// Prints the failure and gives its exit code. A reader that went away
    /// (`| head`) is no failure of the command.
    pub(crate) fn report(self) -> ExitCode {
        if self.code == 0 {
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {}", one_line(&self.message));
        ExitCode::from(self.code)
    }
}

impl From<StreamError> for Failure {
    fn from(e: StreamError) -> Self {
        let unreachable = matches!(
            e,
            StreamError::Connection { .. } | StreamError::Timeout { .. }
        );
        Self {
            unreachable,
            ..Self::new(e.to_string())
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Self {
                code: 0,
                ..Self::new("")
            };
        }
        Self::new(format!("cannot write the output: {e}"))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Self::new(format!("cannot write JSON: {e}"))
    }
}

/// A message on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The output option every command that prints results takes.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct Format {
    /// Print JSON instead of tables (stable shapes: see docs/cli.md).
    #[arg(long)]
    pub(crate) json: bool,
}

impl Format {
    /// Where to print.
    pub(crate) fn out(self) -> Out {
        Out::new(self.json)
    }
}

/// Where a command prints, and whether as JSON.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    pub(crate) json: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    /// One line on stdout.
    pub(crate) fn line(&self, text: impl fmt::Display) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{text}")?;
        stdout.flush()
    }

    /// A JSON document on stdout, pretty.
    pub(crate) fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)?;
        Ok(self.line(text)?)
    }

    /// A JSON value on one line of stdout (a stream of documents).
    pub(crate) fn json_line<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string(value)?;
        Ok(self.line(text)?)
    }

    /// A table on stdout.
    pub(crate) fn table(&self, table: &Table) -> io::Result<()> {
        self.line(table)
    }
}

/// A table with these column headers.
pub(crate) fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    table
}

/// A progress bar on stderr for `total` steps, hidden unless stderr is a
/// terminal.
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// A duration as people write it: `30s`, `5m`, `1h 30m`, `250ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 30s, 5m or 2h: {e}"))
}

/// A point in time: RFC 3339 (`2026-11-25T22:00:00Z`), or a duration ago
/// (`1h`: an hour ago).
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither a time like 2026-11-25T22:00:00Z nor a duration ago like 1h")
    })?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("`{text}` reaches back before the clock does"))
}

/// Milliseconds as people read them: `850ms`, `3s`, `2m 5s`.
pub(crate) fn show_ms(ms: u64) -> String {
    let rounded = if ms >= 1000 { ms / 1000 * 1000 } else { ms };
    humantime::format_duration(Duration::from_millis(rounded)).to_string()
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `-` for nothing.
pub(crate) fn or_dash(value: Option<impl fmt::Display>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse_or_say_why() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        let hour_ago = parse_time("1h").unwrap();
        let age = SystemTime::now().duration_since(hour_ago).unwrap();
        assert!(age >= Duration::from_secs(3600) && age < Duration::from_secs(3700));
        assert!(parse_time("2026-11-25T22:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn text_is_kept_short_and_on_one_line() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(show_ms(1500), "1s");
        assert_eq!(show_ms(250), "250ms");
        assert_eq!(or_dash(None::<u8>), "-");
    }
}
