//! A real container registry on 127.0.0.1 for tests: Debian's
//! `docker-registry` (the CNCF distribution server), storing blobs under a
//! temporary directory so that a test can tamper with them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to configure the registry.
#[derive(Debug, Default)]
pub struct Options {
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require bearer tokens from this realm.
    pub token: Option<TokenAuth>,
}

/// The registry's `auth.token` section.
#[derive(Debug)]
pub struct TokenAuth {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// PEM certificates the token signers chain to.
    pub root_bundle: PathBuf,
}

/// A running `docker-registry serve`; killed when dropped.
#[derive(Debug)]
pub struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
    storage: PathBuf,
}

impl LocalRegistry {
    /// Starts one on a free port, or `None` with a loud SKIPPED line when
    /// `docker-registry` is not installed (a failure under `CI=true`).
    pub fn start() -> Option<Self> {
        Self::start_with(&Options::default())
    }

    /// Like [`LocalRegistry::start`], with TLS and/or token auth.
    pub fn start_with(options: &Options) -> Option<Self> {
        let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .find(|p| Path::new(p).is_file());
        let Some(bin) = bin else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "docker-registry is not installed (CI=true requires it: apt-get install docker-registry)"
                );
            }
            eprintln!(
                "\n!!!!! SKIPPED: docker-registry is not installed (apt-get install docker-registry) !!!!!\n"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        // The registry takes its port from the config; a port just freed by
        // the kernel is the least racy choice without a port-0 option.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((cert, key)) = &options.tls {
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        if let Some(t) = &options.token {
            yaml += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.root_bundle.display()
            );
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = LocalRegistry {
            child,
            addr,
            _dir: dir,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// Where the registry keeps the bytes of blob `sha256:<hex>`.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
