//! PostgreSQL for tests: the server named by `DATABASE_URL` (CI sets it to
//! the one on 127.0.0.1:5432), a fresh database per test, and a TCP proxy
//! that can cut the broker off from the database and let it back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `DATABASE_URL`, or `None` with a loud SKIPPED line. Under `CI=true` a
/// missing variable fails the test.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("DATABASE_URL is not set (CI=true requires the PostgreSQL tests to run)")
        }
        _ => {
            eprintln!(
                "\n!!!!! SKIPPED: PostgreSQL tests need DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) !!!!!\n"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let (authority, _) = match base[scheme_end..].split_once('/') {
        Some((a, d)) => (a, d),
        None => (&base[scheme_end..], ""),
    };
    let mut out = format!("{}{authority}/{db}", &base[..scheme_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Creates an empty database for one test and returns its URL. Databases
/// left by earlier runs of the same `prefix` whose process is gone are
/// dropped first.
pub async fn fresh_database(admin_url: &str, prefix: &str) -> Result<String, sqlx::Error> {
    use sqlx::Connection;
    assert!(
        !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "database prefix must be [a-z_]+"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let pattern = format!("veil_t_{prefix}_%");
    let old: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut conn)
            .await?;
    for name in old {
        let pid = name.rsplit('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            // Audited: `name` came from pg_database and matched our prefix.
            let drop = format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                name.replace('"', "")
            );
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
    let name = format!(
        "veil_t_{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    // Audited: `prefix` is checked below to be [a-z_]+, the rest is digits.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await?;
    Ok(with_database(admin_url, &name))
}

/// A TCP proxy on 127.0.0.1 in front of `target`: [`CutProxy::cut`] closes
/// every connection and refuses new ones (the database "goes away"),
/// [`CutProxy::restore`] lets connections through again.
#[derive(Debug)]
pub struct CutProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (d, o) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if d.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                // A failed clone drops this connection, never the proxy.
                let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                if let Ok(mut open) = o.lock() {
                    open.push(c1);
                    open.push(s1);
                }
                for (mut from, mut to) in [(c2, s2), (server, client)] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        CutProxy { addr, down, open }
    }

    /// The database becomes unreachable: open connections are closed and
    /// new ones are refused.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Ok(mut open) = self.open.lock() {
            for s in open.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// The database is reachable again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_in_urls() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/test", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://127.0.0.1/test?sslmode=disable", "y"),
            "postgres://127.0.0.1/y?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "z"), "postgres://h/z");
    }
}

/// A PostgreSQL server of the test's own (Debian's binaries, a cluster in
/// a temporary directory, a free port on 127.0.0.1), so a test can really
/// stop and restart the database. Run as the `postgres` user when the
/// test runs as root (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// A started server, or `None` (loudly skipped; a failure under
    /// CI=true) when the PostgreSQL server binaries are not installed.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file() && b.join("pg_ctl").is_file());
        let Some(bin) = bin else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL server binaries not found under /usr/lib/postgresql (CI=true)");
            }
            eprintln!(
                "\n!!!!! SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql !!!!!\n"
            );
            return None;
        };
        let as_postgres = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = std::env::temp_dir().join(format!(
            "veil-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = PrivatePostgres {
            bin,
            dir,
            port,
            as_postgres,
        };
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .args(["postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown postgres {}", pg.dir.display());
        }
        let data = pg.dir.join("data");
        let status = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        pg.start_again();
        Some(pg)
    }

    fn command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            std::process::Command::new(exe)
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server and waits until it accepts connections.
    pub fn start_again(&self) {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl start failed");
    }

    /// Stops the server (fast shutdown: connections are closed).
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
