//! The broker's embedded store under session load, in its two key layouts
//! side by side in one run (the same store code decides by the key):
//!
//! * `named`: keys made by `store::session_key` (expiry in 16 hex digits,
//!   then the nonce), what the broker writes: inserted in expiry order,
//!   with no index entry, and swept by key order;
//! * `indexed`: bare random nonces (the layout of earlier versions, and how
//!   the store treats any key that names no expiry): inserted at random
//!   places, each with an entry in the expiry index, which the sweep reads
//!   in full.
//!
//! For each: N session records of 3,100 bytes (an SNP session) inserted by
//! 64 concurrent tasks through `insert_expiring` (the group-commit writer,
//! one insert per handshake), their expiries spread over 300 s (the default
//! session TTL) as under steady load; then the broker's once-a-minute sweep
//! with the first fifth expired. Prints inserts per second, CPU per insert
//! (the whole process), the sweep's time, and the file size.
//!
//! Run: `cargo bench -p veil-bench --bench session_store`
//! (`VEIL_BENCH_SESSIONS` sets N, default 100000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use veil_broker::store::embedded::EmbeddedStore;
use veil_broker::store::{Namespace, Store, session_key};

const TASKS: usize = 64;
const RECORD: usize = 3100;
const TTL: i64 = 300;
const BASE: i64 = 1_800_000_000;

struct Row {
    inserts_per_sec: f64,
    cpu_us_per_insert: f64,
    sweep_ms: f64,
    swept: u64,
    file_mb: f64,
}

/// User + system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc_pid_stat(5) (utime, stime), counted from the
    // state (field 3) after the command name; clock ticks of 1/100 s.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn nonce() -> String {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    // 44 characters, like the broker's base64 nonces.
    hex::encode(b)[..44].to_string()
}

async fn run(named: bool, n: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let value = vec![0x5au8; RECORD];
    let per_task = n / TASKS;
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                for j in 0..per_task {
                    // Sessions start in time order: expiry grows with the
                    // insert's place in the run.
                    let i = j * TASKS + t;
                    let expires = BASE + TTL * i as i64 / (per_task * TASKS) as i64;
                    let nonce = nonce();
                    let key = if named {
                        session_key(expires, &nonce)
                    } else {
                        nonce
                    };
                    let created = store
                        .insert_expiring(Namespace::Sessions, &key, value.clone(), expires)
                        .await
                        .unwrap();
                    assert!(created);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let inserted = (per_task * TASKS) as f64;
    let t1 = Instant::now();
    let swept = store
        .sweep_expired(Namespace::Sessions, BASE + TTL / 5)
        .await
        .unwrap();
    let sweep_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let file_mb = std::fs::metadata(dir.path().join("veil.redb"))
        .map(|m| m.len() as f64 / 1e6)
        .unwrap_or(f64::NAN);
    Row {
        inserts_per_sec: inserted / secs,
        cpu_us_per_insert: cpu / inserted * 1e6,
        sweep_ms,
        swept,
        file_mb,
    }
}

fn main() {
    let n: usize = std::env::var("VEIL_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
        .max(TASKS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "embedded session store: {n} sessions of {RECORD} bytes, {TASKS} concurrent inserters, sweep with a fifth expired"
    );
    println!(
        "{:<10} {:>12} {:>14} {:>12} {:>10} {:>10}",
        "layout", "inserts/s", "CPU us/insert", "sweep ms", "swept", "file MB"
    );
    let mut rows = Vec::new();
    // Interleaved twice, so that a slow minute of the machine shows.
    for round in 0..2 {
        for (label, named) in [("named", true), ("indexed", false)] {
            let r = rt.block_on(run(named, n));
            println!(
                "{:<10} {:>12.0} {:>14.1} {:>12.1} {:>10} {:>10.1}",
                format!("{label}#{}", round + 1),
                r.inserts_per_sec,
                r.cpu_us_per_insert,
                r.sweep_ms,
                r.swept,
                r.file_mb
            );
            rows.push((named, r));
        }
    }
    let mean = |named: bool, f: fn(&Row) -> f64| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|(k, _)| *k == named)
            .map(|(_, r)| f(r))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    println!(
        "named / indexed: inserts/s {:.2}x, CPU per insert {:.2}x, sweep time {:.2}x, file {:.2}x",
        mean(true, |r| r.inserts_per_sec) / mean(false, |r| r.inserts_per_sec),
        mean(true, |r| r.cpu_us_per_insert) / mean(false, |r| r.cpu_us_per_insert),
        mean(true, |r| r.sweep_ms) / mean(false, |r| r.sweep_ms),
        mean(true, |r| r.file_mb) / mean(false, |r| r.file_mb),
    );
}
