//! Side-by-side table of several results.

use crate::stats::{BenchResult, LatencySummary};
use crate::workload::ConsumeCheck;

fn lat(l: &Option<LatencySummary>) -> [String; 6] {
    match l {
        Some(l) => [l.p50, l.p90, l.p99, l.p999, l.p9999, l.max].map(|v| format!("{v:.3}")),
        None => std::array::from_fn(|_| "-".to_string()),
    }
}

/// A table with one row per result; Markdown if asked, aligned text otherwise.
pub fn table(results: &[BenchResult], markdown: bool) -> String {
    let header = [
        "run",
        "mode",
        "records",
        "rec/s",
        "MB/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99 ms",
        "max ms",
        "errors",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                // Consumed MB/s of a headers-only run are batch wire bytes, not values.
                match r.consume_check {
                    ConsumeCheck::Full => r.mode.clone(),
                    ConsumeCheck::Headers => format!("{} (headers)", r.mode),
                },
                r.records_total.to_string(),
                format!("{:.0}", r.records_per_sec),
                format!("{:.2}", r.mb_per_sec),
            ];
            row.extend(lat(&r.latency_ms));
            row.push(r.produce_errors.to_string());
            row
        })
        .collect();
    let mut out = String::new();
    if markdown {
        out += &format!("| {} |\n", header.join(" | "));
        out += &format!(
            "|{}\n",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 2 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for r in &rows {
            out += &format!("| {} |\n", r.join(" | "));
        }
        return out;
    }
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<w$}", w = width[i])
                } else {
                    format!("{c:>w$}", w = width[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            + "\n"
    };
    out += &line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_result() {
        let a = BenchResult {
            name: "a".into(),
            mode: "produce".into(),
            records_per_sec: 12345.0,
            latency_ms: Some(LatencySummary {
                p50: 1.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let b = BenchResult {
            name: "b".into(),
            ..a.clone()
        };
        let md = table(&[a.clone(), b.clone()], true);
        assert_eq!(md.lines().count(), 4);
        assert!(md.contains("| a | produce |") && md.contains("12345") && md.contains("1.500"));
        let txt = table(&[a, b], false);
        assert_eq!(txt.lines().count(), 3);
    }
}
