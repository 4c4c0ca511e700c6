//! Benchmark helpers: a fixed-duration loop measured on the calling thread
//! (one core), and a table printer.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Runs `f` repeatedly for about `budget` and returns operations per second.
pub fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up.
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..50 {
            f();
        }
        n += 50;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
