//! How the operator commands print: aligned tables for people, JSON for scripts, and a
//! progress line on stderr that only appears when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;

/// `--format` of the table-printing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> anyhow::Result<Format> {
        match s {
            "table" | "text" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => bail!("--format must be table or json, not '{other}'"),
        }
    }
}

/// A table with columns as wide as their widest cell, separated by two spaces; the last
/// column is not padded.
pub fn table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.as_ref().chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<pad$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(|c| c.as_ref()).collect());
    }
    out
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `-` for a missing value.
pub fn dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// How often the progress line is redrawn.
const PROGRESS_REDRAW: Duration = Duration::from_millis(200);

/// A one-line progress report on stderr (`label: done/total`), redrawn at most every
/// `PROGRESS_REDRAW`, only when stderr is a terminal (and, for commands whose output is
/// a stream of records, only when stdout is not the same terminal).
pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    enabled: bool,
    drawn: bool,
    /// When the line was last drawn (None: never, so the first update draws at once).
    last: Option<Instant>,
}

impl Progress {
    /// Progress for a long operation whose output is a summary at the end.
    pub fn new(label: &str, total: Option<u64>) -> Progress {
        Progress::with(label, total, std::io::stderr().is_terminal())
    }

    /// Progress for a long operation, shown only if `allowed` (and stderr is a terminal).
    pub fn when(label: &str, total: Option<u64>, allowed: bool) -> Progress {
        Progress::with(label, total, allowed && std::io::stderr().is_terminal())
    }

    /// Progress for an operation that prints records on stdout: shown only when stdout is not
    /// a terminal (the records would mix with it).
    pub fn for_stream(label: &str, total: Option<u64>) -> Progress {
        Progress::with(
            label,
            total,
            std::io::stderr().is_terminal() && !std::io::stdout().is_terminal(),
        )
    }

    fn with(label: &str, total: Option<u64>, enabled: bool) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            enabled,
            drawn: false,
            last: None,
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.enabled && self.last.is_none_or(|t| t.elapsed() >= PROGRESS_REDRAW) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.last = Some(Instant::now());
        self.drawn = true;
        let text = match self.total {
            Some(t) => format!("\r{}: {}/{}", self.label, self.done, t),
            None => format!("\r{}: {}", self.label, self.done),
        };
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the command.
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    }

    /// Clears the line (if anything was drawn).
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "PARTITIONS"],
            &[vec!["a-long-name", "1"], vec!["b", "12"]],
        );
        assert_eq!(
            t,
            "NAME         PARTITIONS\na-long-name  1\nb            12\n"
        );
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(Format::parse("table").unwrap(), Format::Table);
        assert!(Format::parse("yaml").is_err());
    }

    #[test]
    fn disabled_progress_draws_nothing() {
        let mut p = Progress::with("x", Some(3), false);
        p.add(2);
        assert!(!p.drawn);
        assert_eq!(p.done, 2);
    }
}
