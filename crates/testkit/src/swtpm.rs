//! A software TPM 2.0 for tests: Debian's `swtpm` serving raw TPM commands
//! on a loopback TCP port (and its control channel on another), state in a
//! temporary directory, started with TPM2_Startup done.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `swtpm socket`; killed when dropped.
#[derive(Debug)]
pub struct SoftTpm {
    child: Child,
    /// The command port on 127.0.0.1.
    pub port: u16,
    pub ctrl_port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SoftTpm {
    /// Starts one, or `None` with a loud SKIPPED line when `swtpm` is not
    /// installed (a failure under `CI=true`).
    pub fn start() -> Option<Self> {
        if Command::new("swtpm").arg("--version").output().is_err() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "swtpm is not installed (CI=true requires it: apt-get install swtpm swtpm-tools tpm2-tools)"
                );
            }
            eprintln!("\n!!!!! SKIPPED: swtpm is not installed (apt-get install swtpm) !!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // tpm2-tools' swtpm TCTI expects the control channel on port + 1.
        let (port, ctrl_port) = loop {
            let p = free_port();
            if let Some(c) = p.checked_add(1)
                && TcpListener::bind(("127.0.0.1", c)).is_ok()
            {
                break (p, c);
            }
        };
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl_port},bindaddr=127.0.0.1"))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "swtpm did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(SoftTpm {
            child,
            port,
            ctrl_port,
            _dir: dir,
        })
    }

    /// The tpm2-tools TCTI string for it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
