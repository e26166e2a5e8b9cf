//! The harness's report: a markdown table (medians of the rounds, each target as a ratio to
//! nginx in the same scenario) and a PNG chart drawn by gnuplot.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::load::Sample;
use crate::median;

/// The rounds of one target in one scenario.
pub struct Row {
    pub scenario: String,
    pub target: String,
    pub runs: Vec<Sample>,
    /// New upstream connections the target opened in each run, where it counts them.
    pub opened: Vec<f64>,
}

impl Row {
    /// Medians of the rounds; unexpected answers summed.
    pub fn summary(&self) -> Sample {
        let of = |f: fn(&Sample) -> f64| median(&mut self.runs.iter().map(f).collect::<Vec<_>>());
        Sample {
            rps: of(|s| s.rps),
            p50_us: of(|s| s.p50_us),
            p99_us: of(|s| s.p99_us),
            p999_us: of(|s| s.p999_us),
            unexpected: self.runs.iter().map(|s| s.unexpected).sum(),
        }
    }
}

fn find<'a>(rows: &'a [Row], scenario: &str, target: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.target == target)
}

/// `numerator / denominator` of two rows' median requests/s, if both ran.
pub fn ratio(rows: &[Row], a: (&str, &str), b: (&str, &str)) -> Option<f64> {
    Some(find(rows, a.0, a.1)?.summary().rps / find(rows, b.0, b.1)?.summary().rps)
}

fn ms(micros: f64) -> String {
    format!("{:.2}", micros / 1000.0)
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | target | requests/s | p50 ms | p99 ms | p99.9 ms | vs nginx | unexpected | new upstream connections per run |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let s = row.summary();
        let vs = ratio(rows, (&row.scenario, &row.target), (&row.scenario, "nginx"))
            .map_or("-".to_owned(), |r| format!("{r:.2}"));
        let opened = if row.opened.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.0}", median(&mut row.opened.clone()))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {vs} | {} | {opened} |",
            row.scenario,
            row.target,
            s.rps,
            ms(s.p50_us),
            ms(s.p99_us),
            ms(s.p999_us),
            s.unexpected
        );
    }
    out
}

/// Draws requests/s and p99 per scenario and target into `dir/results.png` with gnuplot.
pub fn chart(rows: &[Row], targets: &[&str], dir: &Path) -> Result<(), String> {
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.scenario.as_str()).collect();
    scenarios.dedup();
    let mut data = String::from("scenario");
    for metric in ["req/s", "p99"] {
        for target in targets {
            let _ = write!(data, "\t{target} {metric}");
        }
    }
    data.push('\n');
    for scenario in &scenarios {
        data.push_str(scenario);
        for metric in [0, 1] {
            for target in targets {
                match find(rows, scenario, target).map(Row::summary) {
                    Some(s) if metric == 0 => {
                        let _ = write!(data, "\t{:.0}", s.rps);
                    }
                    Some(s) => {
                        let _ = write!(data, "\t{:.3}", s.p99_us / 1000.0);
                    }
                    None => data.push_str("\t-"),
                }
            }
        }
        data.push('\n');
    }
    std::fs::write(dir.join("chart.tsv"), data).map_err(|e| e.to_string())?;
    let n = targets.len();
    let script = format!(
        r#"set terminal png size 1500,1000
set output "results.png"
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key outside right top vertical
set grid ytics
set yrange [0:*]
set xtics noenhanced
set key noenhanced
set multiplot layout 2,1
set title "Requests per second (higher is better)"
plot for [i=2:{a}] "chart.tsv" using i:xtic(1) title columnheader(i)
set title "p99 latency in ms (lower is better)"
plot for [i={b}:{c}] "chart.tsv" using i:xtic(1) title columnheader(i)
unset multiplot
"#,
        a = n + 1,
        b = n + 2,
        c = 2 * n + 1
    );
    std::fs::write(dir.join("chart.gp"), script).map_err(|e| e.to_string())?;
    let status = Command::new("gnuplot")
        .arg("chart.gp")
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run gnuplot: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("gnuplot failed: {status}"))
    }
}
