//! Resident memory of this process, from `/proc/self/status` (Linux), and
//! consumers run in child processes so their peak is their own.

use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::Result;

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resident memory now, in bytes.
pub fn rss() -> Option<u64> {
    status_bytes("VmRSS")
}

/// The most resident memory so far (or since [`reset_peak`]), in bytes.
pub fn peak() -> Option<u64> {
    status_bytes("VmHWM")
}

/// Starts the peak over from the current resident memory (Linux 4.0+);
/// whether it could.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What a child process reports, one JSON line on its standard output.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// Resident memory when the work started, bytes.
    pub rss_start: u64,
    /// Peak resident memory during the work, bytes.
    pub peak: u64,
    /// Seconds the work took.
    pub seconds: f64,
    /// Anything else the child measured.
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Runs this benchmark binary with `args` and reads its report.
///
/// # Errors
/// If the child cannot start, fails, or prints no report.
pub fn run_child(args: &[String]) -> Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("child {args:?} printed no report"))?;
    Ok(serde_json::from_str(line)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let rss = rss().unwrap();
        let peak = peak().unwrap();
        assert!(rss > 0 && peak >= rss / 2);
    }
}
