//! SVG charts with plotters: throughput over time, latency percentile curve, and a
//! comparison chart of several runs' percentile curves.
//!
//! The percentile axis is in "nines": x = -log10(1 - p), so p90 = 1, p99 = 2, p99.9 = 3 and
//! the tail gets as much room as the body.

use crate::stats::BenchResult;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (900, 520);
const NINES_MAX: f64 = 5.0;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("chart: {e:?}")
}

fn nines(pct: f64) -> f64 {
    let tail = (1.0 - pct / 100.0).max(10f64.powf(-NINES_MAX));
    (-tail.log10()).clamp(0.0, NINES_MAX)
}

fn nines_label(x: &f64) -> String {
    match x.round() as i32 {
        0 => "p0".into(),
        1 => "p90".into(),
        2 => "p99".into(),
        3 => "p99.9".into(),
        4 => "p99.99".into(),
        5 => "p99.999".into(),
        _ => String::new(),
    }
}

/// Writes `<stem>-throughput.svg` and `<stem>-latency.svg` next to `json_path`.
pub fn write_result_charts(r: &BenchResult, json_path: &Path) -> Result<Vec<PathBuf>> {
    let stem = json_path.with_extension("");
    let tp = PathBuf::from(format!("{}-throughput.svg", stem.display()));
    let lat = PathBuf::from(format!("{}-latency.svg", stem.display()));
    throughput_chart(r, &tp)?;
    let mut out = vec![tp];
    if !r.latency_percentiles.is_empty() {
        comparison_chart(std::slice::from_ref(r), &lat)?;
        out.push(lat);
    }
    Ok(out)
}

pub fn throughput_chart(r: &BenchResult, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // Only whole seconds of the run: the drain after the end is partial and would read as a
    // throughput drop.
    let full_s = r
        .workload
        .as_ref()
        .map_or(r.series.len(), |w| w.duration_s.floor() as usize);
    let series = &r.series[..r.series.len().min(full_s.max(1))];
    let n = series.len().max(1) as f64;
    let ymax = series
        .iter()
        .map(|p| p.produced_records_per_sec.max(p.consumed_records_per_sec))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: records/s per second ({:.0} rec/s, {:.1} MB/s in window)",
                r.name, r.records_per_sec, r.mb_per_sec
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n, 0f64..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("records/s")
        .draw()
        .map_err(err)?;
    let produced: Vec<(f64, f64)> = series
        .iter()
        .map(|p| (p.t_s as f64 + 0.5, p.produced_records_per_sec as f64))
        .collect();
    if produced.iter().any(|p| p.1 > 0.0) {
        chart
            .draw_series(LineSeries::new(produced, BLUE.stroke_width(2)))
            .map_err(err)?
            .label("produced (acked)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    let consumed: Vec<(f64, f64)> = series
        .iter()
        .map(|p| (p.t_s as f64 + 0.5, p.consumed_records_per_sec as f64))
        .collect();
    if consumed.iter().any(|p| p.1 > 0.0) {
        chart
            .draw_series(LineSeries::new(consumed, RED.stroke_width(2)))
            .map_err(err)?
            .label("consumed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    if let Some(w) = &r.workload {
        if w.warmup_s > 0.0 {
            chart
                .draw_series(LineSeries::new(
                    vec![(w.warmup_s, 0.0), (w.warmup_s, ymax)],
                    RGBColor(120, 120, 120).stroke_width(2),
                ))
                .map_err(err)?
                .label("end of warm-up")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Latency percentile curves of one or more results in one chart.
pub fn comparison_chart(results: &[BenchResult], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ymax = results
        .iter()
        .flat_map(|r| r.latency_percentiles.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let ymin = results
        .iter()
        .flat_map(|r| r.latency_percentiles.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .clamp(0.001, ymax / 2.0)
        / 1.5;
    let title = if results.len() == 1 {
        format!(
            "{}: latency by percentile ({})",
            results[0].name, results[0].mode
        )
    } else {
        "latency by percentile".to_string()
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..NINES_MAX, (ymin..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&nines_label)
        .draw()
        .map_err(err)?;
    for (i, r) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = r
            .latency_percentiles
            .iter()
            .map(|&(p, ms)| (nines(p), ms.max(ymin)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let label = match &r.latency_ms {
            Some(l) => format!("{} (p50 {:.2} ms, p99 {:.2} ms)", r.name, l.p50, l.p99),
            None => r.name.clone(),
        };
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Horizontal bars of MB/s (and records/s in the label) for several results.
pub fn throughput_bars(results: &[BenchResult], path: &Path) -> Result<()> {
    let height = (80 + 28 * results.len() as u32).max(200);
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let xmax = results
        .iter()
        .map(|r| r.mb_per_sec)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.45;
    let n = results.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("throughput (MB/s of record values)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d(0f64..xmax, 0f64..n)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("MB/s")
        .draw()
        .map_err(err)?;
    for (i, r) in results.iter().enumerate() {
        let y = n - i as f64 - 1.0;
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.15), (r.mb_per_sec, y + 0.85)],
                color.filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!(
                    "{}  {:.1} MB/s, {:.0} rec/s",
                    r.name, r.mb_per_sec, r.records_per_sec
                ),
                (r.mb_per_sec + xmax * 0.01, y + 0.75),
                ("sans-serif", 13),
            )))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BenchResult, SeriesPoint};

    #[test]
    fn charts_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = BenchResult {
            name: "t".into(),
            mode: "produce".into(),
            latency_percentiles: vec![
                (0.0, 0.5),
                (50.0, 1.0),
                (99.0, 3.0),
                (99.99, 9.0),
                (100.0, 12.0),
            ],
            series: (0..5)
                .map(|i| SeriesPoint {
                    t_s: i,
                    produced_records_per_sec: 1000 + i * 10,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let files = write_result_charts(&r, &dir.path().join("r.json")).expect("charts");
        assert_eq!(files.len(), 2);
        for f in files {
            let svg = std::fs::read_to_string(&f).expect("svg");
            assert!(
                svg.starts_with("<svg") && svg.contains("polyline"),
                "{}",
                f.display()
            );
        }
        let bars = dir.path().join("bars.svg");
        throughput_bars(&[r.clone(), r], &bars).expect("bars");
        assert!(std::fs::read_to_string(&bars)
            .expect("svg")
            .contains("<rect"));
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES_MAX);
    }
}
