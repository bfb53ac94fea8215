//! What every benchmark shares: percentiles, the machine it ran on, and the one table that
//! `e2e/bench-table.sh` prints. Each benchmark prints its rows as it measures them and, when
//! `MULTUS_BENCH_TABLE` names a file, appends them there as tab-separated lines
//! (`figure`, `ours`, `anchor`, `ratio`), so one command can gather every bench's rows.

use std::io::Write;
use std::time::Duration;

/// The environment variable naming the file that rows are appended to.
pub const TABLE_ENV: &str = "MULTUS_BENCH_TABLE";

/// The `p`th percentile (0..=100) of sorted samples, by the nearest-rank rule. `None` when
/// there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `p50 / p99 / max` of unsorted durations, in milliseconds, for a table cell.
pub fn spread_ms(samples: &[Duration]) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort();
    match (
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted.last(),
    ) {
        (Some(p50), Some(p99), Some(max)) => {
            format!("p50 {} / p99 {} / max {}", ms(p50), ms(p99), ms(*max))
        }
        _ => "no samples".into(),
    }
}

/// A duration in milliseconds with one decimal, or seconds with two above 10 s.
pub fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// How many times faster (or smaller) `ours` is than `anchor`: `anchor / ours`, formatted
/// as `12.3x`. `None` when `ours` is zero.
pub fn ratio(ours: f64, anchor: f64) -> Option<String> {
    (ours > 0.0).then(|| format!("{:.1}x", anchor / ours))
}

/// One row of the table: printed now, and appended to `MULTUS_BENCH_TABLE` when set.
pub fn row(figure: &str, ours: &str, anchor: Option<&str>, ratio: Option<&str>) {
    let anchor = anchor.unwrap_or("-");
    let ratio = ratio.unwrap_or("-");
    println!("| {figure} | {ours} | {anchor} | {ratio} |");
    if let Ok(path) = std::env::var(TABLE_ENV) {
        let line = format!("{figure}\t{ours}\t{anchor}\t{ratio}\n");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("could not append to {path}: {e}");
        }
    }
}

/// A benchmark's size from the environment variable `name` (`NODES=1000 cargo bench ...`),
/// or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The machine, for the table's heading: online CPUs and total memory.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.1} GiB",
        mem_kib as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }

    #[test]
    fn ratio_is_anchor_over_ours() {
        assert_eq!(ratio(2.0, 200.0).as_deref(), Some("100.0x"));
        assert_eq!(ratio(0.0, 1.0), None);
    }
}
