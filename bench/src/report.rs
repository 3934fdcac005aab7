//! The figures of a configuration: quantiles, the Markdown rows (SQLite and
//! PostgreSQL tables), the JSON objects, the CPU line on stderr, and the
//! pool-next-to-ceiling comparison table.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::args::Args;
use crate::http::ClientKind;
use crate::pg::{self, RawVariant};
use crate::sys::{self, CpuSnapshot};

/// The `p`-quantile (0..=1) of sorted samples, in milliseconds.
pub(crate) fn quantile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// What a PostgreSQL configuration ran: pool replicas or a raw-SQL variant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PgSetup {
    /// `pool ×R` or the raw-SQL variant's name.
    pub(crate) label: String,
    /// Pool replicas (0 for the raw-SQL ceiling).
    pub(crate) replicas: usize,
    /// Database connections at most: R × pool_size, or the ceiling's pool size.
    pub(crate) conns: usize,
    /// The bench database.
    pub(crate) db: String,
}

/// One configuration's figures.
pub(crate) struct Row {
    /// PostgreSQL mode: what ran (None: SQLite, the original table).
    pub(crate) setup: Option<PgSetup>,
    pub(crate) ready: u64,
    pub(crate) clients: usize,
    pub(crate) client: ClientKind,
    pub(crate) seconds: f64,
    pub(crate) cycles: u64,
    pub(crate) acquire: Vec<u32>,
    pub(crate) heartbeat: Vec<u32>,
    pub(crate) release: Vec<u32>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) double_leases: u64,
    pub(crate) cpu: CpuSnapshot,
    pub(crate) load1: f64,
    pub(crate) rustc: (usize, usize),
    /// PostgreSQL: `pg_stat_database` counts per cycle over the measurement.
    pub(crate) db_stats: Option<pg::DbStats>,
}

impl Row {
    pub(crate) fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    fn per_cycle_us(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1e6 / self.cycles.max(1) as f64
    }
    fn other_cores(&self) -> f64 {
        (self.cpu.machine - self.cpu.pool - self.cpu.bench - self.cpu.postgres).max(0.0)
            / self.seconds
    }

    /// Cores used by each pool thread name over the measurement.
    fn thread_cores(&self) -> BTreeMap<String, f64> {
        self.cpu
            .pool_threads
            .iter()
            .map(|(k, v)| (k.clone(), v / self.seconds))
            .collect()
    }

    /// One line for stderr: where the CPU went.
    pub(crate) fn cpu_line(&self) -> String {
        let threads: Vec<String> = self
            .thread_cores()
            .iter()
            .filter(|(_, c)| **c >= 0.005)
            .map(|(k, c)| format!("{k} {c:.2}"))
            .collect();
        let postgres = match &self.setup {
            None => String::new(),
            Some(s) => format!(
                ", postgres {:.2} (backends of {} {:.2}, other postgres processes {:.2})",
                self.cpu.postgres / self.seconds,
                s.db,
                self.cpu.postgres_ours / self.seconds,
                (self.cpu.postgres - self.cpu.postgres_ours) / self.seconds
            ),
        };
        let setup = self.setup.as_ref().map_or(String::new(), |s| {
            format!("{} ({} conns) ", s.label, s.conns)
        });
        format!(
            "pool-bench: {setup}ready {} clients {}: cores used: pool {:.2} ({}), bench {:.2}{postgres}, other {:.2}",
            self.ready,
            self.clients,
            self.cpu.pool / self.seconds,
            threads.join(", "),
            self.cpu.bench / self.seconds,
            self.other_cores()
        )
    }

    pub(crate) fn pg_markdown_header() -> &'static str {
        "| setup | db conns | ready | clients | cycles/s | acquire p50 | acquire p99 | acquire max | heartbeat p50 | release p50 | errors | pool CPU/cycle | postgres CPU/cycle | bench CPU/cycle | other CPU | load1 | rustc |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    }

    fn errors_cell(&self) -> String {
        if self.error_count() == 0 {
            "0".to_string()
        } else {
            format!(
                "**{}** ({} double leases)",
                self.error_count(),
                self.double_leases
            )
        }
    }

    fn pg_markdown(&self, s: &PgSetup) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.2} cores | {:.2} | {}/{} |",
            s.label,
            s.conns,
            self.ready,
            self.clients,
            self.cycles_per_s(),
            quantile_ms(&self.acquire, 0.50),
            quantile_ms(&self.acquire, 0.99),
            quantile_ms(&self.acquire, 1.0),
            quantile_ms(&self.heartbeat, 0.50),
            quantile_ms(&self.release, 0.50),
            self.errors_cell(),
            self.per_cycle_us(self.cpu.pool),
            self.per_cycle_us(self.cpu.postgres),
            self.per_cycle_us(self.cpu.bench),
            self.other_cores(),
            self.load1,
            self.rustc.0,
            self.rustc.1,
        )
    }

    pub(crate) fn markdown_header() -> &'static str {
        "| ready | clients | client | cycles/s | acquire p50 | acquire p99 | acquire max | heartbeat p50 | release p50 | errors | pool CPU/cycle | bench CPU/cycle | other CPU | load1 | rustc |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    }

    pub(crate) fn markdown(&self) -> String {
        if let Some(s) = &self.setup {
            return self.pg_markdown(s);
        }
        let errors = self.errors_cell();
        format!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {:.0} µs | {:.0} µs | {:.2} cores | {:.2} | {}/{} |",
            self.ready,
            self.clients,
            self.client.name(),
            self.cycles_per_s(),
            quantile_ms(&self.acquire, 0.50),
            quantile_ms(&self.acquire, 0.99),
            quantile_ms(&self.acquire, 1.0),
            quantile_ms(&self.heartbeat, 0.50),
            quantile_ms(&self.release, 0.50),
            errors,
            self.per_cycle_us(self.cpu.pool),
            self.per_cycle_us(self.cpu.bench),
            self.other_cores(),
            self.load1,
            self.rustc.0,
            self.rustc.1,
        )
    }

    pub(crate) fn json(&self) -> Value {
        let ms = |v: &[u32], p| quantile_ms(v, p);
        let mut out = json!({
            "ready": self.ready,
            "clients": self.clients,
            "client": self.client.name(),
            "seconds": self.seconds,
            "cycles": self.cycles,
            "cycles_per_s": self.cycles_per_s(),
            "acquire_ms": {"p50": ms(&self.acquire, 0.5), "p90": ms(&self.acquire, 0.9),
                           "p99": ms(&self.acquire, 0.99), "max": ms(&self.acquire, 1.0),
                           "samples": self.acquire.len()},
            "heartbeat_ms": {"p50": ms(&self.heartbeat, 0.5), "p99": ms(&self.heartbeat, 0.99)},
            "release_ms": {"p50": ms(&self.release, 0.5), "p99": ms(&self.release, 0.99)},
            "errors": self.errors,
            "double_leases": self.double_leases,
            "cpu_seconds": {"pool": self.cpu.pool, "bench": self.cpu.bench,
                            "machine_busy": self.cpu.machine, "cpus": sys::cpus()},
            "cpu_us_per_cycle": {"pool": self.per_cycle_us(self.cpu.pool),
                                 "bench": self.per_cycle_us(self.cpu.bench)},
            "pool_thread_cpu_cores": self.thread_cores(),
            "other_cpu_cores": self.other_cores(),
            "loadavg1": self.load1,
            "rustc_processes": [self.rustc.0, self.rustc.1],
        });
        if let (Some(s), Some(o)) = (&self.setup, out.as_object_mut()) {
            o.insert("setup".into(), json!(s.label));
            o.insert("replicas".into(), json!(s.replicas));
            o.insert("db_connections".into(), json!(s.conns));
            o.insert("database".into(), json!(s.db));
            o.insert(
                "postgres_cpu_seconds".into(),
                json!({"all": self.cpu.postgres, "backends_of_the_bench_db": self.cpu.postgres_ours}),
            );
            o.insert(
                "postgres_cpu_us_per_cycle".into(),
                json!(self.per_cycle_us(self.cpu.postgres)),
            );
            if let Some(d) = &self.db_stats {
                o.insert(
                    "pg_stat_database_per_cycle".into(),
                    json!({"commits": d.commits, "rollbacks": d.rollbacks,
                           "tup_returned": d.returned, "tup_fetched": d.fetched,
                           "tup_written": d.written}),
                );
            }
        }
        out
    }
}

/// Prints a row as configured; false when it had errors.
pub(crate) fn emit(args: &Args, row: &Row) -> bool {
    let clean = row.error_count() == 0;
    if !clean {
        eprintln!("pool-bench: errors: {:?}", row.errors);
    }
    eprintln!("{}", row.cpu_line());
    if let Some(s) = &row.db_stats {
        eprintln!("pool-bench: pg_stat_database {}", s.line());
    }
    if args.json {
        println!("{}", row.json());
    } else {
        println!("{}", row.markdown());
    }
    clean
}

/// Pool ×R next to the ceiling on the same number of connections, per client count.
pub(crate) fn side_by_side(rows: &[Row]) -> String {
    let mut out = vec![
        "| ready | replicas | db conns | clients | pool cycles/s | ceiling cycles/s | pool / ceiling | pool acquire p50 | ceiling acquire p50 | pool acquire p99 | ceiling acquire p99 | ≥ 50 % |".to_string(),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    for p in rows {
        let Some(ps) = p.setup.as_ref().filter(|s| s.replicas > 0) else {
            continue;
        };
        // The ceiling: prepared statements if run, else the first variant run.
        let ceiling = rows
            .iter()
            .filter(|c| {
                c.ready == p.ready
                    && c.clients == p.clients
                    && c.setup
                        .as_ref()
                        .is_some_and(|cs| cs.replicas == 0 && cs.conns == ps.conns)
            })
            .min_by_key(|c| {
                c.setup
                    .as_ref()
                    .map(|cs| cs.label != RawVariant::Prepared.name())
            });
        let Some(c) = ceiling else { continue };
        let ratio = p.cycles_per_s() / c.cycles_per_s();
        out.push(format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            p.ready,
            ps.replicas,
            ps.conns,
            p.clients,
            p.cycles_per_s(),
            c.cycles_per_s(),
            ratio * 100.0,
            quantile_ms(&p.acquire, 0.5),
            quantile_ms(&c.acquire, 0.5),
            quantile_ms(&p.acquire, 0.99),
            quantile_ms(&c.acquire, 0.99),
            if ratio >= 0.5 { "met" } else { "**not met**" },
        ));
    }
    if out.len() == 2 {
        String::new()
    } else {
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    fn row(setup: Option<PgSetup>, clients: usize, cycles: u64, acquire: Vec<u32>) -> Row {
        Row {
            setup,
            ready: 10,
            clients,
            client: ClientKind::Reqwest,
            seconds: 10.0,
            cycles,
            acquire,
            heartbeat: Vec::new(),
            release: Vec::new(),
            errors: BTreeMap::new(),
            double_leases: 0,
            cpu: CpuSnapshot::default(),
            load1: 0.0,
            rustc: (0, 0),
            db_stats: None,
        }
    }

    fn setup(label: &str, replicas: usize, conns: usize) -> Option<PgSetup> {
        Some(PgSetup {
            label: label.into(),
            replicas,
            conns,
            db: "d".into(),
        })
    }

    #[test]
    fn side_by_side_pairs_pools_with_the_ceiling_on_as_many_connections() {
        let rows = vec![
            row(setup("pool ×1", 1, 16), 64, 6_000, vec![1000, 2000]),
            row(setup("pool ×2", 2, 32), 64, 4_000, vec![1000]),
            row(setup("raw SQL per-call", 0, 16), 64, 9_000, vec![500]),
            row(setup("raw SQL", 0, 16), 64, 10_000, vec![500]),
            row(setup("raw SQL", 0, 32), 64, 10_000, vec![500]),
        ];
        let t = side_by_side(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[2].starts_with("| 10 | 1 | 16 | 64 | 600 | 1000 | 60 % | 1.00 ms | 0.50 ms | 2.00 ms | 0.50 ms | met |"),
            "{t}"
        );
        assert!(
            lines[3].contains("| 40 % |") && lines[3].ends_with("**not met** |"),
            "{t}"
        );
        assert!(side_by_side(&rows[..2]).is_empty());
    }
}
