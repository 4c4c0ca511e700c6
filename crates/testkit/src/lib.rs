//! Test helpers: finding the real-hardware vector corpus, and a tiny HTTP
//! server on 127.0.0.1 that stands in for a vendor web service (AMD KDS),
//! PostgreSQL helpers, and a real container registry on loopback.
//! Used only as a dev-dependency.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod pg;
pub mod registry;
pub mod swtpm;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The vector corpus: `$VEIL_VECTORS`, or `../shared/vectors` from the
/// repository root. Under `CI=true` a missing corpus panics (the test
/// fails); elsewhere it prints a loud SKIPPED line and returns `None`.
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

/// Reads a file of the corpus.
pub fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A loopback HTTP/1.1 server answering GETs from a fixed route table.
#[derive(Debug)]
pub struct StubHttp {
    pub base: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl StubHttp {
    /// Serves `routes` (path with query → body); the first `throttle`
    /// requests are answered `429 Too Many Requests` with `Retry-After: 0`.
    pub fn start(routes: Vec<(String, Vec<u8>)>, throttle: usize) -> Self {
        Self::start_with_headers(
            routes
                .into_iter()
                .map(|(p, b)| (p, b, Vec::new()))
                .collect(),
            throttle,
        )
    }

    /// Like [`StubHttp::start`], each route also sending response headers.
    #[allow(clippy::type_complexity)]
    pub fn start_with_headers(
        routes: Vec<(String, Vec<u8>, Vec<(String, String)>)>,
        throttle: usize,
    ) -> Self {
        let count = AtomicUsize::new(0);
        Self::start_handler(move |_method, path, _body| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            if n < throttle {
                return (
                    "429 Too Many Requests\r\nRetry-After: 0".to_string(),
                    Vec::new(),
                    String::new(),
                );
            }
            match routes.iter().find(|(p, _, _)| p == path) {
                Some((_, b, h)) => (
                    "200 OK".to_string(),
                    b.clone(),
                    h.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect(),
                ),
                None => ("404 Not Found".to_string(), Vec::new(), String::new()),
            }
        })
    }

    /// A loopback server whose answers come from `handler(method, path,
    /// body)` → (status line after `HTTP/1.1 `, body, extra header lines):
    /// for stubs of services that take POST bodies (an OCSP responder).
    pub fn start_handler(
        handler: impl Fn(&str, &str, &[u8]) -> (String, Vec<u8>, String) + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { break };
                let Ok(clone) = s.try_clone() else { continue };
                let mut r = BufReader::new(clone);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut l = String::new();
                    match r.read_line(&mut l) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if l == "\r\n" => break,
                        Ok(_) => {
                            if let Some((k, v)) = l.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if std::io::Read::read_exact(&mut r, &mut body).is_err() {
                    continue;
                }
                let mut words = line.split_whitespace();
                let method = words.next().unwrap_or("").to_string();
                let path = words.next().unwrap_or("").to_string();
                h.lock().unwrap().push(path.clone());
                let (status, body, extra) = handler(&method, &path, &body);
                let head = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        StubHttp { base, hits }
    }

    /// The paths requested so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn percent_encode(x: &str) -> String {
    x.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A loopback PCCS serving DCAP collateral (the PCCS JSON shape, as in the
/// vector files) the way Intel PCS v4 does: TCB info and QE identity with
/// their issuer-chain headers, the platform PCK CRL (DER) and the root CA
/// CRL (hex), for one `tee` (`tdx` or `sgx`) and FMSPC (hex).
pub fn pccs_stub(collateral: &serde_json::Value, tee: &str, fmspc: &str) -> StubHttp {
    let s = |k: &str| collateral[k].as_str().unwrap_or_default().to_string();
    StubHttp::start_with_headers(
        vec![
            (
                format!("/{tee}/certification/v4/tcb?fmspc={fmspc}"),
                format!(
                    r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                    s("tcb_info"),
                    s("tcb_info_signature")
                )
                .into_bytes(),
                vec![(
                    "TCB-Info-Issuer-Chain".into(),
                    percent_encode(&s("tcb_info_issuer_chain")),
                )],
            ),
            (
                format!("/{tee}/certification/v4/qe/identity"),
                format!(
                    r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                    s("qe_identity"),
                    s("qe_identity_signature")
                )
                .into_bytes(),
                vec![(
                    "SGX-Enclave-Identity-Issuer-Chain".into(),
                    percent_encode(&s("qe_identity_issuer_chain")),
                )],
            ),
            (
                "/sgx/certification/v4/pckcrl?ca=platform&encoding=der".into(),
                hex::decode(s("pck_crl")).unwrap_or_default(),
                vec![(
                    "SGX-PCK-CRL-Issuer-Chain".into(),
                    percent_encode(&s("pck_crl_issuer_chain")),
                )],
            ),
            (
                "/sgx/certification/v4/rootcacrl".into(),
                s("root_ca_crl").into_bytes(),
                vec![],
            ),
        ],
        0,
    )
}
