//! `veil bench broker`: N concurrent simulated guests run auth → attest →
//! resource against any KBS-protocol broker, next to the verification-only
//! rate of the same evidence measured in the same run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use veil_attester::sim::SimSnpAttester;
use veil_endorsements::snp::SnpEndorsements;
use veil_evidence::snp::Product;
use veil_evidence::snp::coco::CocoJson;
use veil_protocol::client::KbsClient;
use veil_protocol::jwe::KeyAlgorithm;
use veil_sim::snp::{ReportParams, SimSnp};
use veil_verifier::UnixTime;
use veil_verifier::snp::{SnpVerifier, TrustAnchors};

use crate::EXIT_ERROR;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Handshakes per second and latency percentiles against a broker.
    Broker(BrokerBench),
    /// The agent: time from start to first secret served, and peak RSS.
    Agent(AgentBench),
    /// Decryption throughput of a large encrypted layer against the
    /// AES-CTR + HMAC floor and skopeo.
    Image(crate::bench_image::ImageBench),
}

#[derive(Debug, Args)]
pub struct AgentBench {
    /// Simulated PKI state directory.
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    /// Agent starts to measure.
    #[arg(long, default_value_t = 5)]
    pub runs: u32,
    /// Secrets served by each agent after the first (for the RSS figure).
    #[arg(long, default_value_t = 200)]
    pub requests: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Evidence {
    /// Simulated SNP reports (the broker must trust the simulated root).
    Snp,
    /// CoCo `sample` evidence (the broker must accept it), e.g. for a peer.
    Sample,
}

#[derive(Debug, Args)]
pub struct BrokerBench {
    /// The broker. Without it, an in-process Veil broker is started on
    /// 127.0.0.1:0 (embedded store in a temporary directory).
    #[arg(long)]
    pub url: Option<String>,
    /// Concurrent guests; repeatable.
    #[arg(long = "concurrency", default_values_t = vec![1, 8, 64])]
    pub concurrency: Vec<usize>,
    /// Seconds per concurrency level.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of warm-up before each level's measured window: the guests
    /// connect and run, but neither their handshakes nor the CPU time they
    /// cause are counted (errors are).
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Worker threads of the guests' runtime (they share the machine with
    /// the broker; 0 = one per core).
    #[arg(long, default_value_t = 1)]
    pub guest_threads: usize,
    #[arg(long, value_enum, default_value = "snp")]
    pub evidence: Evidence,
    /// Simulated PKI state directory (SNP evidence).
    #[arg(long, env = "VEIL_STATE_DIR", default_value = ".veil/sim")]
    pub state_dir: PathBuf,
    /// The resource each guest fetches.
    #[arg(long, default_value = "default/key/1")]
    pub resource: String,
    /// Fetch the resource (a resource policy that allows it is needed);
    /// `--no-resource` stops after the token.
    #[arg(long)]
    pub no_resource: bool,
    /// PostgreSQL URL: also run in-process brokers on this database
    /// (`--replicas` of them), side by side with the embedded store.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Replica counts for the PostgreSQL runs; each guest's handshakes and
    /// resource reads are spread over the replicas (no sticky sessions).
    #[arg(long = "replicas", default_values_t = vec![1, 3])]
    pub replicas: Vec<usize>,
    /// With `--url`: the broker's process id on this machine, to report
    /// its CPU time per handshake (read from /proc).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Write every measured handshake as `<target> <concurrency> <start ms>
    /// <latency ms>` (start from the level's measured window) to this file,
    /// to see when slow handshakes happen.
    #[arg(long)]
    pub latency_log: Option<PathBuf>,
    /// Seconds per part of the floor measurement (ES256 signature, JWE,
    /// HTTP exchanges alone; see `bench_floor`); 0 skips it.
    #[arg(long, default_value_t = 2.0)]
    pub floor_secs: f64,
}

/// Threads of in-process brokers' runtimes carry this name.
const BROKER_THREAD: &str = "veil-broker";

/// The simulated guests run on a runtime of their own, whose threads carry
/// this name, so that every other thread's CPU time (the brokers'
/// runtimes, their stores' threads) counts as the brokers'.
const GUEST_THREAD: &str = "veil-guest";

/// Where a broker's CPU time is read.
#[derive(Debug, Clone, Copy)]
enum CpuSource {
    /// This process's threads but the guests' ([`GUEST_THREAD`]).
    InProcess,
    /// Every thread of another process.
    Process(u32),
}

/// CPU seconds of one thread from /proc: `schedstat` (nanoseconds) when
/// the kernel has it, else `stat`'s utime + stime (clock ticks; Linux
/// reports them in USER_HZ = 100 per second).
fn thread_cpu_secs(task: &std::path::Path) -> Option<f64> {
    if let Ok(s) = std::fs::read_to_string(task.join("schedstat"))
        && let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // The command name may hold spaces: fields restart after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds used so far by the threads under `dir` (`/proc/<pid>/task`)
/// whose name `counts`.
fn cpu_secs(dir: &std::path::Path, counts: impl Fn(&str) -> bool) -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir(dir).ok()?.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if counts(comm.trim_end()) {
            total += thread_cpu_secs(&path).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// CPU seconds used so far by this process's threads named `name`.
pub(crate) fn named_cpu_secs(name: &str) -> Option<f64> {
    cpu_secs(std::path::Path::new("/proc/self/task"), |c| c == name)
}

/// CPU seconds used so far by this process's guest threads
/// ([`GUEST_THREAD`]): the simulated attesters' share.
fn guest_cpu_secs() -> Option<f64> {
    named_cpu_secs(GUEST_THREAD)
}

impl CpuSource {
    /// CPU seconds used so far by the broker's threads.
    fn secs(self) -> Option<f64> {
        match self {
            CpuSource::InProcess => cpu_secs(std::path::Path::new("/proc/self/task"), |c| {
                c != GUEST_THREAD
            }),
            CpuSource::Process(pid) => {
                cpu_secs(&PathBuf::from(format!("/proc/{pid}/task")), |_| true)
            }
        }
    }
}

/// One broker setup under test: a label, its replicas' URLs and where
/// their CPU time is read (all replicas of one setup together).
struct Target {
    label: String,
    urls: Vec<String>,
    cpu: Option<CpuSource>,
}

/// The benchmark's guests: Veil's simulated SNP guest, its evidence bound
/// to each challenge's digest.
struct Source(SimSnpAttester);

impl Source {
    fn snp_evidence(&self, digest: &[u8; 48]) -> Result<CocoJson, String> {
        self.0
            .coco_evidence(&veil_protocol::binding::expected_report_data(digest))
            .map_err(|e| e.to_string())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub async fn run(cmd: BenchCommand) -> ExitCode {
    let result = match cmd {
        BenchCommand::Broker(a) => broker_bench(a).await,
        BenchCommand::Agent(a) => agent_bench(a).await,
        BenchCommand::Image(a) => crate::bench_image::run(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn broker_bench(a: BrokerBench) -> Result<(), String> {
    let sim = SimSnp::load_or_create(&a.state_dir, Product::Milan).map_err(|e| e.to_string())?;
    let params = ReportParams::new(Product::Milan);
    let ark = sim.ark_der().to_vec();
    let source = Arc::new(Source(
        SimSnpAttester::new(sim, params).map_err(|e| e.to_string())?,
    ));

    // Verification only, same evidence, one core.
    let verify_rate = if a.evidence == Evidence::Snp {
        let ev = source.snp_evidence(&[7u8; 48])?;
        let bytes = serde_json::to_vec(&ev).map_err(|e| e.to_string())?;
        let anchors = TrustAnchors::amd()
            .dangerous_trust_simulated_root(Product::Milan, &ark)
            .map_err(|e| e.to_string())?;
        let verifier = SnpVerifier::new(anchors);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            let parsed = veil_evidence::snp::coco::parse_json(&bytes).map_err(|e| e.to_string())?;
            let mut e = SnpEndorsements::default();
            e.add_cert_table(&parsed.cert_chain)
                .map_err(|e| e.to_string())?;
            verifier
                .verify(&parsed.report, &e, UnixTime::now())
                .map_err(|e| e.to_string())?;
            n += 1;
        }
        Some(n as f64 / start.elapsed().as_secs_f64())
    } else {
        None
    };

    // The brokers: given, or in-process (embedded store; and PostgreSQL
    // with 1..n replicas when a database is given).
    let mut guards = Vec::new();
    let mut targets = Vec::new();
    match &a.url {
        Some(u) => targets.push(Target {
            label: "given".into(),
            urls: vec![u.clone()],
            cpu: a.broker_pid.map(CpuSource::Process),
        }),
        None => {
            let sample = a.evidence == Evidence::Sample;
            let (url, g) = local_broker(&ark, sample, None, &a.state_dir).await?;
            guards.push(g);
            targets.push(Target {
                label: "embedded".into(),
                urls: vec![url],
                cpu: Some(CpuSource::InProcess),
            });
            if let Some(db) = &a.database_url {
                for &n in &a.replicas {
                    let mut urls = Vec::new();
                    for _ in 0..n.max(1) {
                        let (url, g) = local_broker(&ark, sample, Some(db), &a.state_dir).await?;
                        guards.push(g);
                        urls.push(url);
                    }
                    targets.push(Target {
                        label: format!("postgres x{}", n.max(1)),
                        urls,
                        // The brokers' threads only; PostgreSQL's own
                        // processes are not counted.
                        cpu: Some(CpuSource::InProcess),
                    });
                }
            }
            for t in &targets {
                prepare(&t.urls[0], &a.resource, sample).await?;
            }
        }
    }

    println!(
        "evidence: {:?}   resource: {}",
        a.evidence,
        if a.no_resource { "no" } else { &a.resource }
    );
    if let Some(v) = verify_rate {
        println!("verification only (parse + verify, chain cached, 1 core): {v:.0}/s");
    }
    let guests = NamedRuntime::with_threads(GUEST_THREAD, a.guest_threads)?;
    if a.floor_secs > 0.0
        && let Some(t) = targets.first()
    {
        // A peer that refuses the one handshake the floor needs (for its
        // sizes) still gets its levels measured.
        if let Err(e) = floor(&a, t, &source, verify_rate, guests.handle()?).await {
            eprintln!("floor not measured: {e}");
        }
    }
    println!(
        "{:<12} {:>11} {:>12} {:>9} {:>9} {:>9} {:>8} {:>10} {:>15} {:>14} {:>14}",
        "broker",
        "concurrency",
        "handshakes/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "vs verify",
        "broker CPU/hs",
        "vs verify/CPU",
        "guest CPU/hs"
    );
    let mut rates: Vec<(String, usize, f64)> = Vec::new();
    for t in &targets {
        for &c in &a.concurrency {
            let rate = run_level(&a, t, c, &source, verify_rate, guests.handle()?).await?;
            rates.push((t.label.clone(), c, rate));
        }
    }
    drop(guests);
    if targets.len() > 1 {
        println!();
        for (label, c, rate) in rates.iter().filter(|(l, _, _)| l != "embedded") {
            if let Some((_, _, base)) = rates.iter().find(|(l, bc, _)| l == "embedded" && bc == c) {
                println!("{label} / embedded at concurrency {c}: {:.2}x", rate / base);
            }
        }
    }
    drop(guards);
    Ok(())
}

/// Measures and prints the floor of a broker's cost per handshake
/// (`bench_floor`), with bodies of the sizes one real handshake against
/// `t` gives, and the best "vs verify/CPU" ratio it leaves.
async fn floor(
    a: &BrokerBench,
    t: &Target,
    source: &Arc<Source>,
    verify_rate: Option<f64>,
    guests: &tokio::runtime::Handle,
) -> Result<(), String> {
    let url = t.urls[0].clone();
    let (source2, evidence) = (source.clone(), a.evidence);
    // One handshake for the real sizes: the /attest body and the token.
    let sizes = guests
        .spawn(async move {
            let client =
                KbsClient::new(&url, KeyAlgorithm::EcdhEsP256).map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            let token = client
                .attest(evidence_name(evidence), |nonce, digest| {
                    let ev = match evidence {
                        Evidence::Snp => serde_json::to_value(source2.snp_evidence(digest)?)
                            .map_err(|e| e.to_string())?,
                        Evidence::Sample => sample_evidence(digest),
                    };
                    body = serde_json::to_vec(&serde_json::json!({
                        "runtime-data": {"nonce": nonce, "tee-pubkey": {"kty": "EC", "crv": "P-256",
                            "alg": "ECDH-ES+A256KW", "x": "x".repeat(43), "y": "y".repeat(43)}},
                        "tee-evidence": {"primary_evidence": {"tee": evidence_name(evidence), "evidence": ev},
                            "additional_evidence": ""}
                    }))
                    .map_err(|e| e.to_string())?;
                    Ok(ev)
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((body, token.len()))
        })
        .await
        .map_err(|e| e.to_string())??;
    let (body, token_len) = sizes;
    let c = a.concurrency.iter().copied().max().unwrap_or(1);
    let f = crate::bench_floor::measure(crate::bench_floor::Setup {
        guests,
        concurrency: c,
        secs: a.floor_secs,
        attest_body: body,
        token_len,
    })
    .await?;
    println!(
        "floor per handshake besides verification: ES256 token signature {:.0} us + JWE (ECDH-ES+A256KW, P-256) {:.0} us (1 core) + the three HTTP exchanges alone {:.0} us (server CPU, {c} guests) = {:.0} us",
        f.sign_us,
        f.jwe_us,
        f.http_us,
        f.total_us()
    );
    if let Some(v) = verify_rate {
        let verify_us = 1e6 / v;
        println!(
            "  with verification ({verify_us:.0} us): best possible vs verify/CPU {:.2}x",
            verify_us / (verify_us + f.total_us())
        );
    }
    Ok(())
}

fn evidence_name(e: Evidence) -> &'static str {
    match e {
        Evidence::Snp => "snp",
        Evidence::Sample => "sample",
    }
}

fn sample_evidence(digest: &[u8]) -> serde_json::Value {
    serde_json::json!({"svn": "1", "report_data": base64::engine::general_purpose::STANDARD.encode(digest)})
}

/// One concurrency level against one target; prints its row.
async fn run_level(
    a: &BrokerBench,
    t: &Target,
    c: usize,
    source: &Arc<Source>,
    verify_rate: Option<f64>,
    guests: &tokio::runtime::Handle,
) -> Result<f64, String> {
    let measure_from = Instant::now() + Duration::from_secs(a.warmup);
    let deadline = measure_from + Duration::from_secs(a.duration);
    let urls = Arc::new(t.urls.clone());
    let mut tasks = Vec::new();
    for guest in 0..c.max(1) {
        let source = source.clone();
        let urls = urls.clone();
        let resource = a.resource.clone();
        let evidence = a.evidence;
        let fetch = !a.no_resource;
        tasks.push(guests.spawn(async move {
            let http = reqwest::Client::builder().cookie_store(true).build();
            let mut lat = Vec::new();
            let mut phases = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = guest;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                // Handshake on one replica, the resource from the next.
                let at = &urls[i % urls.len()];
                let from = &urls[i.wrapping_add(1) % urls.len()];
                i = i.wrapping_add(1);
                let r = match &http {
                    Ok(h) => {
                        one_handshake(
                            at,
                            from,
                            h,
                            &source,
                            evidence,
                            fetch.then_some(resource.as_str()),
                        )
                        .await
                    }
                    Err(e) => Err(e.to_string()),
                };
                match r {
                    Ok(p) if t0 >= measure_from => {
                        lat.push((
                            (t0 - measure_from).as_secs_f64() * 1000.0,
                            t0.elapsed().as_secs_f64() * 1000.0,
                        ));
                        phases.push(p);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, phases, errors, first_error)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let start = Instant::now();
    let cpu_before = t.cpu.and_then(CpuSource::secs);
    let guest_before = guest_cpu_secs();
    let mut all = Vec::new();
    let mut phases = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, p, e, f) = t.await.map_err(|e| e.to_string())?;
        all.extend(l);
        phases.extend(p);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(path) = &a.latency_log {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (at, l) in &all {
            let _ = writeln!(out, "{} {c} {at:.3} {l:.3}", t.label.replace(' ', "_"));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, out.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut all: Vec<f64> = all.into_iter().map(|(_, l)| l).collect();
    let cpu = match (cpu_before, t.cpu.and_then(CpuSource::secs)) {
        (Some(b), Some(a)) if !all.is_empty() => Some((a - b) / all.len() as f64),
        _ => None,
    };
    let guest_cpu = match (guest_before, guest_cpu_secs()) {
        (Some(b), Some(a)) if !all.is_empty() => {
            format!("{:.0} us", (a - b) / all.len() as f64 * 1e6)
        }
        _ => "-".to_string(),
    };
    all.sort_by(f64::total_cmp);
    let rate = all.len() as f64 / secs;
    let ratio = verify_rate.map_or_else(|| "-".to_string(), |v| format!("{:.2}x", rate / v));
    // The broker's own cost: handshakes per CPU-second of its threads,
    // against verifications per CPU-second (the guests' share of the
    // machine — simulated evidence signing, TEE keys, JWE decryption —
    // is left out; only the broker's protocol, policy, token and JWE work
    // is added to the verification).
    let (per_hs, cpu_ratio) = match cpu {
        Some(c) => (
            format!("{:.0} us", c * 1e6),
            verify_rate.map_or_else(|| "-".to_string(), |v| format!("{:.2}x", 1.0 / c / v)),
        ),
        None => ("-".to_string(), "-".to_string()),
    };
    println!(
        "{:<12} {c:>11} {rate:>12.1} {:>9.2} {:>9.2} {:>9.2} {errors:>8} {ratio:>10} {per_hs:>15} {cpu_ratio:>14} {guest_cpu:>14}",
        t.label,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99)
    );
    // Where the time went: the broker's handlers are short, so the
    // exchanges' times are mostly waiting for a CPU.
    let steps: Vec<String> = PHASES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut v: Vec<f64> = phases
                .iter()
                .filter_map(|p: &Phases| p.get(i).copied())
                .collect();
            v.sort_by(f64::total_cmp);
            format!(
                "{name} {:.2}/{:.2}",
                percentile(&v, 0.50),
                percentile(&v, 0.99)
            )
        })
        .collect();
    println!("{:<12} steps, p50/p99 ms: {}", "", steps.join(", "));
    if let Some(e) = first_error {
        eprintln!("  first error ({}, concurrency {c}): {e}", t.label);
    }
    Ok(rate)
}

/// Stores the benchmark's resource (and, for sample evidence, a policy
/// that releases it) through a broker's open admin API.
async fn prepare(url: &str, resource: &str, sample: bool) -> Result<(), String> {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/kbs/v0/resource/{resource}"))
        .body("benchmark secret")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("storing the resource: {}", r.status()));
    }
    if sample {
        let policy = "package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == \"resource\"\n";
        http.post(format!("{url}/kbs/v0/resource-policy"))
            .json(&serde_json::json!({"policy": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(policy)}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Where one handshake's time went, in ms, as [`PHASES`] names them.
type Phases = [f64; 4];

/// The steps of a handshake as the guest sees them: the TEE key and the
/// `/auth` exchange; the evidence for the challenge; the `/attest`
/// exchange; the `/resource` exchange and the JWE decryption.
const PHASES: [&str; 4] = ["auth", "evidence", "attest", "resource"];

async fn one_handshake(
    url: &str,
    resource_url: &str,
    http: &reqwest::Client,
    source: &Source,
    evidence: Evidence,
    resource: Option<&str>,
) -> Result<Phases, String> {
    let t0 = Instant::now();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1000.0;
    // A fresh TEE key per handshake, as a CoCo guest does; the HTTP
    // connection is kept alive across a guest's handshakes.
    let client = KbsClient::with_client(url, KeyAlgorithm::EcdhEsP256, http.clone())
        .map_err(|e| e.to_string())?;
    // When the challenge arrived and when its evidence was ready.
    let mut marks = (0.0, 0.0);
    let token = match evidence {
        Evidence::Snp => {
            client
                .attest("snp", |_, digest| {
                    let asked = ms(t0);
                    let ev = source.snp_evidence(digest);
                    marks = (asked, ms(t0));
                    ev
                })
                .await
        }
        Evidence::Sample => {
            client
                .attest("sample", |_, digest| {
                    let asked = ms(t0);
                    let ev = sample_evidence(digest);
                    marks = (asked, ms(t0));
                    Ok(ev)
                })
                .await
        }
    }
    .map_err(|e| e.to_string())?;
    let attested = ms(t0);
    if let Some(r) = resource {
        client
            .resource_from(resource_url, r, Some(&token))
            .await
            .map_err(|e| e.to_string())?;
    }
    let (asked, ready) = marks;
    Ok([asked, ready - asked, attested - ready, ms(t0) - attested])
}

struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let mut rnd = [0u8; 8];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| "no randomness".to_string())?;
    let dir = std::env::temp_dir().join(format!("veil-bench-{}", hex::encode(rnd)));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// A multi-threaded runtime whose threads carry a name; shut down without
/// blocking when dropped (it is dropped from async code).
pub(crate) struct NamedRuntime(Option<tokio::runtime::Runtime>);

impl NamedRuntime {
    pub(crate) fn new(name: &str) -> Result<Self, String> {
        Self::with_threads(name, 0)
    }

    /// `threads` workers (0: tokio's default, one per core).
    fn with_threads(name: &str, threads: usize) -> Result<Self, String> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            b.worker_threads(threads);
        }
        b.thread_name(name)
            .enable_all()
            .build()
            .map(|rt| NamedRuntime(Some(rt)))
            .map_err(|e| e.to_string())
    }

    pub(crate) fn handle(&self) -> Result<&tokio::runtime::Handle, String> {
        self.0
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| "runtime stopped".to_string())
    }
}

impl Drop for NamedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A broker running in this process on a runtime of its own (threads
/// named [`BROKER_THREAD`]); stops (and removes its directory) when
/// dropped.
struct LocalBroker {
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: TempDirGuard,
    _runtime: NamedRuntime,
}

/// Starts an in-process broker trusting the simulated root, with an open
/// admin API on loopback: on an embedded store in a temporary directory,
/// or on PostgreSQL (`database`) with a KEK kept in `state_dir` so that
/// every replica and every run share it.
async fn local_broker(
    ark: &[u8],
    sample: bool,
    database: Option<&str>,
    state_dir: &std::path::Path,
) -> Result<(String, LocalBroker), String> {
    let dir = tempfile_dir()?;
    let ark_path = dir.join("ark.pem");
    std::fs::write(
        &ark_path,
        veil_endorsements::certs::to_pem("CERTIFICATE", ark),
    )
    .map_err(|e| e.to_string())?;
    let mut cfg = veil_broker::config::Config {
        data_dir: dir.join("data"),
        insecure_http: true,
        dangerous_allow_unauthenticated_admin: true,
        dangerous_trust_simulated_tee: Some(ark_path),
        dangerous_accept_sample_evidence: sample,
        ..veil_broker::config::Config::default()
    };
    if let Some(db) = database {
        let kek = state_dir.join("bench-kek.hex");
        if !kek.exists() {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).map_err(|_| "no randomness".to_string())?;
            std::fs::write(&kek, hex::encode(k)).map_err(|e| format!("{}: {e}", kek.display()))?;
        }
        cfg.database_url = db.to_string();
        cfg.kek_file = Some(kek);
    }
    let runtime = NamedRuntime::new(BROKER_THREAD)?;
    let broker = runtime
        .handle()?
        .spawn(veil_broker::Broker::build(cfg))
        .await
        .map_err(|e| e.to_string())??;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    runtime
        .handle()?
        .spawn(veil_broker::serve(listener, broker, async {
            let _ = rx.await;
        }));
    Ok((
        format!("http://{addr}"),
        LocalBroker {
            _stop: tx,
            _dir: TempDirGuard(dir),
            _runtime: runtime,
        },
    ))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn agent_bench(a: AgentBench) -> Result<(), String> {
    use std::io::BufRead;
    let sim = SimSnp::load_or_create(&a.state_dir, Product::Milan).map_err(|e| e.to_string())?;
    let params = ReportParams::new(Product::Milan);
    let ark = sim.ark_der().to_vec();
    let source = Source(SimSnpAttester::new(sim, params).map_err(|e| e.to_string())?);
    let (url, _broker) = local_broker(&ark, false, None, &a.state_dir).await?;
    prepare(&url, "default/key/1", false).await?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // The guest image's executable, `veil-agent`, built beside this one;
    // `veil agent run` when it is not there.
    let agent_exe = exe.with_file_name("veil-agent");
    let (program, subcommand): (PathBuf, &[&str]) = if agent_exe.is_file() {
        (agent_exe, &["run"])
    } else {
        (exe, &["agent", "run"])
    };
    let http = reqwest::Client::new();
    let mut first = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..a.runs {
        let t0 = Instant::now();
        let mut child = std::process::Command::new(&program)
            .args(subcommand)
            .args([
                "--tee",
                "sim-snp",
                "--listen",
                "127.0.0.1:0",
                "--broker",
                &url,
            ])
            .arg("--sim-state")
            .arg(&a.state_dir)
            .env("VEIL_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("veil agent listening on ")
            .ok_or("agent did not start")?
            .to_string();
        let get = || {
            http.get(format!("http://{addr}/cdh/resource/default/key/1"))
                .send()
        };
        let r = get().await.map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            let _ = child.kill();
            return Err(format!("agent answered {}", r.status()));
        }
        r.bytes().await.map_err(|e| e.to_string())?;
        first.push(t0.elapsed().as_secs_f64() * 1000.0);
        for _ in 0..a.requests {
            get()
                .await
                .map_err(|e| e.to_string())?
                .bytes()
                .await
                .map_err(|e| e.to_string())?;
        }
        rss.push(peak_rss_kib(child.id()).unwrap_or(0));
        let _ = child.kill();
        let _ = child.wait();
    }
    // The same steps driven in-process by the broker benchmark's client.
    let mut client_times = Vec::new();
    for _ in 0..a.runs {
        let t0 = Instant::now();
        let c = KbsClient::new(&url, KeyAlgorithm::EcdhEsP256).map_err(|e| e.to_string())?;
        let token = c
            .attest("snp", |_, d| source.snp_evidence(d))
            .await
            .map_err(|e| e.to_string())?;
        c.resource("default/key/1", Some(&token))
            .await
            .map_err(|e| e.to_string())?;
        client_times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    let mut rss_f: Vec<f64> = rss.iter().map(|k| *k as f64 / 1024.0).collect();
    println!(
        "agent ({}) on the simulated SNP TEE against a local broker ({url}), {} runs",
        std::iter::once(program.display().to_string())
            .chain(subcommand.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
            .join(" "),
        a.runs
    );
    println!(
        "  start → first secret served (process start, attest, fetch, serve): median {:.1} ms (goal ≤ 100 ms)",
        med(&mut first)
    );
    println!(
        "  same steps by the benchmark client, in-process (no process start):  median {:.1} ms",
        med(&mut client_times)
    );
    println!(
        "  peak RSS while serving {} secrets: median {:.1} MiB (goal ≤ 16 MiB)",
        a.requests + 1,
        med(&mut rss_f)
    );
    Ok(())
}
