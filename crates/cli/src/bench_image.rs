//! `veil bench image`: decryption throughput of one large encrypted layer,
//! side by side in one run with the single-pass floor (AES-256-CTR and
//! HMAC-SHA256 over the same bytes, aws-lc-rs, one core), `openssl speed`
//! for the same primitives when openssl is installed, and skopeo (Go
//! ocicrypt) decrypting the same image as a whole command when skopeo is
//! installed, next to `veil image decrypt` as a whole command. With
//! `--registry`, also a pull: the same bytes as a multi-layer encrypted
//! image pushed to that registry, pulled and unpacked by `veil image pull`,
//! next to the disk's write rate (the floor a pull cannot beat) and to
//! `skopeo copy` pulling and decrypting the same image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use aws_lc_rs::cipher::{AES_256, EncryptionContext, StreamingEncryptingKey, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use clap::Args;

#[derive(Debug, Args)]
pub struct ImageBench {
    /// Size of the layer, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: usize,
    /// Working directory (needs about 3× the layer size); a temporary one
    /// by default.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A registry to measure pulls against (`127.0.0.1:5000`, plain HTTP;
    /// e.g. Debian's `docker-registry serve CONFIG`).
    #[arg(long)]
    pub registry: Option<String>,
    /// Layers of the pulled image (the size split among them).
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
}

const MIB: f64 = 1024.0 * 1024.0;

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn timed(mut cmd: Command) -> Result<f64, String> {
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// `openssl speed -evp ALG -bytes 16384 -seconds 2`: bytes per second.
fn openssl_speed(alg: &str) -> Option<f64> {
    let out = Command::new("taskset")
        .args([
            "-c", "0", "openssl", "speed", "-evp", alg, "-bytes", "16384", "-seconds", "2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().to_lowercase().starts_with(alg))?;
    let kbps: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kbps * 1000.0)
}

pub async fn run(a: ImageBench) -> Result<(), String> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempdir()?;
            tmp.0.clone()
        }
    };
    let size = a.size_mib.max(1) * 1024 * 1024;
    println!(
        "layer: {} MiB of pseudo-random bytes (already compressed data does not compress)",
        a.size_mib
    );
    // The layer, as a gzip-media-type blob of random bytes (decryption
    // does not decompress; unpack is measured separately by `image unpack`).
    let plain = dir.join("plain");
    let mut data = vec![0u8; size];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(b.get(..chunk.len()).unwrap_or_default());
    }
    let diff_id = format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data))
    );
    veil_image::oci::write_image_layout(
        &plain,
        Some("v1"),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", &data)],
        &[diff_id],
    )
    .map_err(|e| e.to_string())?;

    // The floor: one pass of AES-256-CTR and HMAC-SHA256 over the bytes in
    // memory, 64 KiB at a time, this thread only.
    let key = [7u8; 32];
    let t = Instant::now();
    let mut cipher = StreamingEncryptingKey::less_safe_ctr(
        UnboundCipherKey::new(&AES_256, &key).map_err(|_| "aes")?,
        EncryptionContext::Iv128(FixedLength::from([0u8; 16])),
    )
    .map_err(|_| "ctr")?;
    let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, &key));
    let mut out = vec![0u8; 65536 + 16];
    for chunk in data.chunks(65536) {
        let u = cipher.update(chunk, &mut out).map_err(|_| "update")?;
        mac.update(u.written());
    }
    let _ = mac.sign();
    let floor = size as f64 / t.elapsed().as_secs_f64();

    // Veil's layer decryption in this process, this thread, from memory to
    // a sink: as unpacking uses it (HMAC; the diff_id is checked later),
    // and with the digest of the compressed plaintext checked too.
    let mut ct = Vec::with_capacity(size);
    let e = veil_image::layer::encrypt_to(data.as_slice(), &mut ct).map_err(|e| e.to_string())?;
    drop(data);
    let t = Instant::now();
    veil_image::layer::decrypt_to_hmac_only(ct.as_slice(), &e.public, &e.private, Sink)
        .map_err(|e| e.to_string())?;
    let hmac_only = size as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    veil_image::layer::decrypt_to(ct.as_slice(), &e.public, &e.private, Sink)
        .map_err(|e| e.to_string())?;
    let with_digest = size as f64 / t.elapsed().as_secs_f64();
    drop(ct);

    // Keys and the encrypted image.
    let key_pem = dir.join("ec.pem");
    let pub_pem = dir.join("ec-pub.pem");
    {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
        let k = aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::ECDH_P256)
            .map_err(|_| "keygen")?;
        let pk8: Pkcs8V1Der = k.as_der().map_err(|_| "pkcs8")?;
        let spki: PublicKeyX509Der = k
            .compute_public_key()
            .map_err(|_| "public key")?
            .as_der()
            .map_err(|_| "spki")?;
        let pem = |label: &str, der: &[u8]| {
            der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
        };
        std::fs::write(&key_pem, pem("PRIVATE KEY", pk8.as_ref())).map_err(|e| e.to_string())?;
        std::fs::write(&pub_pem, pem("PUBLIC KEY", spki.as_ref())).map_err(|e| e.to_string())?;
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let enc = dir.join("enc");
    let mut c = Command::new(&exe);
    c.args([
        "image",
        "encrypt",
        "--encryption-key",
        &format!("jwe:{}", p(&pub_pem)),
        &p(&plain),
        &p(&enc),
    ]);
    let enc_secs = timed(c)?;

    // Veil's decryption in this process, one core: read, verify the
    // descriptor digest, decrypt, HMAC, plaintext digest (no disk writes).
    let mut c = Command::new("taskset");
    c.args(["-c", "0"]).arg(&exe).args([
        "image",
        "decrypt",
        "--decryption-key",
        &p(&key_pem),
        &p(&enc),
        &p(&dir.join("dec-veil")),
    ]);
    let veil_secs = timed(c)?;
    let skopeo_secs = if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut c = Command::new("taskset");
        c.args([
            "-c",
            "0",
            "skopeo",
            "copy",
            "--decryption-key",
            &p(&key_pem),
        ])
        .arg(format!("oci:{}:v1", p(&enc)))
        .arg(format!("oci:{}:v1", p(&dir.join("dec-skopeo"))));
        Some(timed(c)?)
    } else {
        None
    };
    let mbs = |b: f64| b / MIB;
    println!(
        "single-pass floor (aws-lc-rs AES-256-CTR + HMAC-SHA256, in memory, 1 core): {:.0} MiB/s",
        mbs(floor)
    );
    if let (Some(aes), Some(sha)) = (openssl_speed("aes-256-ctr"), openssl_speed("sha256")) {
        let combined = 1.0 / (1.0 / aes + 1.0 / sha);
        println!(
            "openssl speed (1 core, 16 KiB blocks): aes-256-ctr {:.0} MiB/s, sha256 {:.0} MiB/s, one pass of both {:.0} MiB/s",
            mbs(aes),
            mbs(sha),
            mbs(combined)
        );
    }
    println!(
        "veil image encrypt (whole command): {enc_secs:.2} s ({:.0} MiB/s)",
        a.size_mib as f64 / enc_secs
    );
    println!(
        "veil layer decryption (in process, 1 thread, memory to sink), HMAC as for unpacking: {:.0} MiB/s = {:.2}x the floor",
        mbs(hmac_only),
        hmac_only / floor
    );
    println!(
        "veil layer decryption, HMAC + plaintext digest (as for image decrypt): {:.0} MiB/s = {:.2}x the floor",
        mbs(with_digest),
        with_digest / floor
    );
    let veil_rate = size as f64 / veil_secs;
    println!(
        "veil image decrypt (whole command, 1 core: JWE unwrap, HMAC, plaintext digest, writing and fsync of the plaintext layout): {veil_secs:.2} s = {:.0} MiB/s = {:.2}x the floor",
        mbs(veil_rate),
        veil_rate / floor
    );
    match skopeo_secs {
        Some(s) => println!(
            "skopeo copy --decryption-key (whole command, 1 core): {s:.2} s = {:.0} MiB/s; veil / skopeo = {:.2}x",
            a.size_mib as f64 / s,
            s / veil_secs
        ),
        None => println!("skopeo: not installed (apt-get install skopeo) — no peer row"),
    }
    if let Some(registry) = &a.registry {
        pull_bench(&a, &dir, registry, &exe, &pub_pem, &key_pem)?;
    }
    Ok(())
}

/// The disk's buffered write rate: `size` bytes written in 1 MiB blocks
/// then fsynced (what unpacking a layer ends in).
fn disk_floor(path: &Path, size: usize) -> Result<(f64, f64), String> {
    use std::io::Write;
    let block = vec![0x5au8; 1024 * 1024];
    let t = Instant::now();
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    for _ in 0..size / block.len() {
        f.write_all(&block).map_err(|e| e.to_string())?;
    }
    let buffered = t.elapsed().as_secs_f64();
    f.sync_all().map_err(|e| e.to_string())?;
    let synced = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    Ok((size as f64 / buffered, size as f64 / synced))
}

fn pull_bench(
    a: &ImageBench,
    dir: &Path,
    registry: &str,
    exe: &Path,
    pub_pem: &Path,
    key_pem: &Path,
) -> Result<(), String> {
    let n = a.layers.max(1);
    let per = (a.size_mib.max(1) * 1024 * 1024) / n;
    println!(
        "\npull: {n} uncompressed tar layers of {} MiB, each one file of pseudo-random bytes, JWE-encrypted, from {registry}",
        per / (1024 * 1024)
    );
    let mut tars = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..n {
        let mut body = vec![0u8; per];
        for chunk in body.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(b.get(..chunk.len()).unwrap_or_default());
        }
        let name = format!("data/part{i}.bin");
        tars.push(
            veil_image::unpack::tar_of(&[(name.as_str(), body.as_slice())])
                .map_err(|e| e.to_string())?,
        );
    }
    let diff_ids: Vec<String> = tars.iter().map(|t| veil_image::blob_digest(t)).collect();
    let layers: Vec<(&str, &[u8])> = tars
        .iter()
        .map(|t| ("application/vnd.oci.image.layer.v1.tar", t.as_slice()))
        .collect();
    let plain = dir.join("pull-plain");
    veil_image::oci::write_image_layout(&plain, Some("v1"), &layers, &diff_ids)
        .map_err(|e| e.to_string())?;
    drop(tars);
    let enc = dir.join("pull-enc");
    let mut c = Command::new(exe);
    c.args(["image", "encrypt", "--encryption-key"])
        .arg(format!("jwe:{}", p(pub_pem)))
        .arg(&plain)
        .arg(&enc);
    timed(c)?;
    let _ = std::fs::remove_dir_all(&plain);
    let image = format!("{registry}/veil-bench/pull:v1");
    let mut c = Command::new(exe);
    c.args(["image", "push"])
        .arg(&enc)
        .arg(&image)
        .arg("--plain-http");
    let push_secs = timed(c)?;
    let _ = std::fs::remove_dir_all(&enc);
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .map_err(|e| e.to_string())?;
    let size = (per * n) as f64;
    let (buffered, synced) = disk_floor(&dir.join("disk-floor.bin"), per * n)?;
    let bundle = dir.join("bundle");
    let mut c = Command::new(exe);
    c.args(["image", "pull", &image, "--bundle"])
        .arg(&bundle)
        .arg("--policy")
        .arg(&policy)
        .arg("--decryption-key")
        .arg(key_pem)
        .arg("--plain-http");
    let pull_secs = timed(c)?;
    let _ = std::fs::remove_dir_all(&bundle);
    println!("veil image push (whole command): {push_secs:.2} s");
    println!(
        "disk floor (1 MiB writes to one file on the same disk): {:.0} MiB/s buffered, {:.0} MiB/s with fsync",
        buffered / MIB,
        synced / MIB
    );
    println!(
        "veil image pull (whole command: manifest, digest checks, JWE unwrap, decrypt + HMAC + untar + diff_id of every layer, {} at a time): {pull_secs:.2} s = {:.0} MiB/s = {:.2}x the buffered disk rate",
        4,
        size / pull_secs / MIB,
        size / pull_secs / buffered
    );
    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut c = Command::new("skopeo");
        c.args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            "--decryption-key",
        ])
        .arg(key_pem)
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:v1", p(&dir.join("pull-skopeo"))));
        let s = timed(c)?;
        let _ = std::fs::remove_dir_all(dir.join("pull-skopeo"));
        println!(
            "skopeo copy docker:// → oci: --decryption-key (pull + decrypt, no unpack): {s:.2} s = {:.0} MiB/s; veil pull / skopeo = {:.2}x",
            size / s / MIB,
            s / pull_secs
        );
    }
    Ok(())
}

/// Discards plaintext (the throughput rows measure decryption alone).
struct Sink;

impl veil_image::layer::Stage for Sink {
    fn write(&mut self, _plain: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn commit(self) -> std::io::Result<()> {
        Ok(())
    }
    fn abort(self) {}
}

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TmpDir, String> {
    let mut rnd = [0u8; 8];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| "no randomness".to_string())?;
    let dir = std::env::temp_dir().join(format!("veil-bench-image-{}", hex::encode(rnd)));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(TmpDir(dir))
}
