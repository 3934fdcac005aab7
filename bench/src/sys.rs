//! What the machine was doing during a measurement, from `/proc`: CPU time of
//! the pool and of the bench (utime + stime of every thread), CPU busy time of
//! the whole machine (so CPU used by anything else shows), the load average
//! and how many `rustc` processes ran.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, almost always 100).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user + system) used so far by a process (`"self"` or a pid).
pub fn process_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// Busy CPU seconds of the whole machine (all cores, idle and iowait excluded).
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: f64 = v.iter().sum();
    Some((total - v[3] - v[4]) / ticks_per_second())
}

/// CPU seconds per thread name of a process (threads of one name summed:
/// `tokio-runtime-w`, `store-writer`, `store-reader-0`, ...).
pub fn thread_cpu_seconds(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in dir.filter_map(Result::ok) {
        let tid = task.file_name().to_string_lossy().into_owned();
        let name = std::fs::read_to_string(task.path().join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_default();
        if let Some(s) = process_cpu_seconds(&format!("{pid}/task/{tid}")) {
            *out.entry(name).or_insert(0.0) += s;
        }
    }
    out
}

/// The 1-minute load average.
pub fn loadavg1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many processes named `rustc` run now (a cargo build competing for the cores).
pub fn rustc_count() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rustc")
        })
        .count()
}

/// Number of CPUs the machine has.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// CPU seconds of every process named `postgres` (the server and its
/// backends), by pid, with whether its command line names database `db`
/// (`postgres: USER DB HOST(PORT) STATE`: a backend of the bench's database).
pub fn postgres_cpu_seconds(db: Option<&str>) -> BTreeMap<u32, (f64, bool)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if !std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            continue;
        }
        let ours = db.is_some_and(|db| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .split_whitespace()
                    .any(|w| w == db)
            })
        });
        if let Some(s) = process_cpu_seconds(&pid.to_string()) {
            out.insert(pid, (s, ours));
        }
    }
    out
}

/// One snapshot of the counters above.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// The pool processes' CPU seconds (all replicas).
    pub pool: f64,
    pub bench: f64,
    pub machine: f64,
    /// The pool's CPU seconds per thread name (all replicas).
    pub pool_threads: BTreeMap<String, f64>,
    /// Every `postgres` process (PostgreSQL mode; 0 otherwise).
    pub postgres: f64,
    /// The backends of the bench's database (part of `postgres`).
    pub postgres_ours: f64,
    postgres_pids: BTreeMap<u32, (f64, bool)>,
}

impl CpuSnapshot {
    /// A snapshot of the pool processes `pool_pids` (none in the raw-SQL mode)
    /// and, when `pg_db` is given, of the PostgreSQL processes.
    pub fn take(pool_pids: &[u32], pg_db: Option<&str>) -> CpuSnapshot {
        let mut pool_threads = BTreeMap::new();
        for &pid in pool_pids {
            for (k, v) in thread_cpu_seconds(pid) {
                *pool_threads.entry(k).or_insert(0.0) += v;
            }
        }
        let postgres_pids = match pg_db {
            Some(db) => postgres_cpu_seconds(Some(db)),
            None => BTreeMap::new(),
        };
        CpuSnapshot {
            pool: pool_pids
                .iter()
                .map(|p| process_cpu_seconds(&p.to_string()).unwrap_or(f64::NAN))
                .sum(),
            bench: process_cpu_seconds("self").unwrap_or(f64::NAN),
            machine: machine_busy_seconds().unwrap_or(f64::NAN),
            pool_threads,
            postgres: postgres_pids.values().map(|(s, _)| s).sum(),
            postgres_ours: postgres_pids
                .values()
                .filter(|(_, o)| *o)
                .map(|(s, _)| s)
                .sum(),
            postgres_pids,
        }
    }

    /// CPU seconds used between `self` and a later snapshot. A `postgres`
    /// process that started in between counts with all its CPU time; one that
    /// ended in between is lost.
    pub fn until(&self, later: &CpuSnapshot) -> CpuSnapshot {
        let mut postgres = 0.0;
        let mut postgres_ours = 0.0;
        for (pid, (s, ours)) in &later.postgres_pids {
            let d = s - self.postgres_pids.get(pid).map_or(0.0, |(s0, _)| *s0);
            postgres += d;
            if *ours {
                postgres_ours += d;
            }
        }
        CpuSnapshot {
            pool: later.pool - self.pool,
            bench: later.bench - self.bench,
            machine: later.machine - self.machine,
            pool_threads: later
                .pool_threads
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - self.pool_threads.get(k).copied().unwrap_or(0.0),
                    )
                })
                .collect(),
            postgres,
            postgres_ours,
            postgres_pids: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time_and_the_machine() {
        assert!(process_cpu_seconds("self").is_some_and(|s| s >= 0.0));
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
        assert!(loadavg1().is_some());
    }

    #[test]
    fn snapshots_subtract_per_postgres_process() {
        let mut a = CpuSnapshot::default();
        a.postgres_pids.insert(10, (1.0, true));
        a.postgres_pids.insert(11, (5.0, false));
        let mut b = CpuSnapshot::default();
        b.postgres_pids.insert(10, (1.5, true));
        b.postgres_pids.insert(11, (5.25, false));
        // Started during the window: all of its time counts.
        b.postgres_pids.insert(12, (0.5, true));
        let d = a.until(&b);
        assert!((d.postgres - 1.25).abs() < 1e-9);
        assert!((d.postgres_ours - 1.0).abs() < 1e-9);
    }
}
