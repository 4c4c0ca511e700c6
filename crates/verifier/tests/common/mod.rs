//! Locating the real-hardware vector corpus (`../shared/vectors`, or
//! `$VEIL_VECTORS`). Under `CI=true` a missing corpus fails the test; elsewhere
//! the test says loudly that it was skipped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

pub fn vectors() -> Option<PathBuf> {
    let dir = match std::env::var_os("VEIL_VECTORS") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    if dir.join("EXPECTED.jsonl").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "vector corpus not found at {} (CI=true requires it; set VEIL_VECTORS)",
            dir.display()
        );
    }
    eprintln!(
        "\n!!!!! SKIPPED: real-hardware vectors not found at {} (set VEIL_VECTORS) !!!!!\n",
        dir.display()
    );
    None
}

pub fn read(dir: &std::path::Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
