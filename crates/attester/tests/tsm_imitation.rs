//! The configfs-tsm attester against a directory tree that imitates the
//! kernel: a thread plays the kernel, populating each new request directory
//! and answering `inblob` with a simulated SNP report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use veil_attester::tsm::{Tsm, TsmAttester};
use veil_attester::{AttestError, Attester};
use veil_evidence::snp::Product;
use veil_sim::snp::{ReportParams, SimSnp};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    /// Another writer bumps `generation` between our write and our read.
    Racing,
}

struct FakeKernel {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeKernel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn fake_kernel(root: PathBuf, provider: &'static str, mode: Mode) -> FakeKernel {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sim = SimSnp::generate(Product::Milan).unwrap();
    let handle = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            for entry in std::fs::read_dir(&root).unwrap().flatten() {
                let d = entry.path();
                // The attester may remove its directory at any moment (as
                // with the real configfs): a vanished directory is skipped.
                if !d.join("provider").exists() {
                    let _ = std::fs::write(d.join("generation"), "0\n");
                    let _ = std::fs::write(d.join("provider"), format!("{provider}\n"));
                }
                let inblob = d.join("inblob");
                if inblob.exists() && !d.join("outblob").exists() {
                    let rd: [u8; 64] =
                        match std::fs::read(&inblob).ok().and_then(|b| b.try_into().ok()) {
                            Some(rd) => rd,
                            None => continue,
                        };
                    let mut p = ReportParams::new(Product::Milan);
                    p.report_data = rd;
                    let report = sim.report(&p).unwrap();
                    let generation = if mode == Mode::Racing { 2 } else { 1 };
                    let _ = std::fs::write(d.join("generation"), format!("{generation}\n"));
                    let _ = std::fs::write(d.join("outblob"), report.as_bytes());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    FakeKernel {
        stop,
        handle: Some(handle),
    }
}

fn leftovers(root: &Path) -> usize {
    std::fs::read_dir(root).unwrap().count()
}

#[test]
fn snp_report_through_configfs_tsm() {
    let root = tempfile::tempdir().unwrap();
    let _k = fake_kernel(root.path().to_path_buf(), "sev_guest", Mode::Honest);
    let a = TsmAttester::detect(root.path()).unwrap();
    assert_eq!(a.tee(), "snp");
    let ev = a.evidence(&[0x42; 64]).unwrap();
    let parsed = veil_evidence::snp::coco::parse_json(ev.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.report.report_data, [0x42; 64]);
    assert_eq!(leftovers(root.path()), 0, "request directories are removed");
}

#[test]
fn concurrent_writer_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let _k = fake_kernel(root.path().to_path_buf(), "sev_guest", Mode::Racing);
    let tsm = Tsm::new(root.path());
    let err = tsm.request("sev_guest", &[1; 64], None).unwrap_err();
    assert!(
        matches!(
            err,
            AttestError::ConcurrentWriter {
                found: 2,
                expected: 1
            }
        ),
        "{err}"
    );
    assert_eq!(leftovers(root.path()), 0);
}

#[test]
fn wrong_provider_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let _k = fake_kernel(root.path().to_path_buf(), "tdx_guest", Mode::Honest);
    let tsm = Tsm::new(root.path());
    let err = tsm.request("sev_guest", &[1; 64], None).unwrap_err();
    assert!(matches!(err, AttestError::WrongProvider { .. }), "{err}");
    let a = TsmAttester::detect(root.path()).unwrap();
    assert_eq!(a.tee(), "tdx");
}

#[test]
fn missing_interface_is_a_clear_error() {
    let err = TsmAttester::detect("/nonexistent/tsm/report").unwrap_err();
    assert!(err.to_string().contains("configfs-tsm"), "{err}");
}

#[test]
fn certificate_table_decoding() {
    // One VCEK entry and the terminator, then the data.
    let guid = hex::decode("8d75da6364e66445adc5f4b93be8accd").unwrap();
    let mut table = guid.clone();
    table.extend_from_slice(&48u32.to_le_bytes());
    table.extend_from_slice(&3u32.to_le_bytes());
    table.extend_from_slice(&[0u8; 24]);
    table.extend_from_slice(&[7, 8, 9]);
    let certs = veil_attester::tsm::snp_cert_table(&table).unwrap();
    assert_eq!(certs[0]["cert_type"], "VCEK");
    assert_eq!(certs[0]["data"], serde_json::json!([7, 8, 9]));
    table[16] = 200; // offset out of range
    assert!(veil_attester::tsm::snp_cert_table(&table).is_err());
    assert!(veil_attester::tsm::snp_cert_table(&[0u8; 10]).is_err());
}
