//! Encrypted, signed images through a real registry (Debian's
//! `docker-registry` on 127.0.0.1): built, encrypted, signed and pushed by
//! `veil image`, pulled by `veil image pull` in the guest with the signature
//! policy applied first and the layer keys released by a real broker to a
//! real agent on the simulated SNP TEE. Every tampered variant is refused
//! with no plaintext left behind; skopeo (Go containers/image) checks the
//! signatures Veil wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use veil_image::unpack::{gzip, tar_of};
use veil_testkit::registry::{LocalRegistry, Options, TokenAuth};

mod common;

use common::{Setup, VEIL, p, set_resource, setup_broker_and_agent, veil};

fn sha256(b: &[u8]) -> String {
    veil_image::blob_digest(b)
}

/// Writes a P-256 signing key (PKCS#8 PEM) and its public key; their paths.
fn cosign_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let pem = |label: &str, der: &[u8]| {
        der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap()
    };
    std::fs::write(
        &key,
        pem("PRIVATE KEY", pair.to_pkcs8v1().unwrap().as_ref()),
    )
    .unwrap();
    let spki: aws_lc_rs::encoding::PublicKeyX509Der = pair.public_key().as_der().unwrap();
    std::fs::write(&public, pem("PUBLIC KEY", spki.as_ref())).unwrap();
    (key, public)
}

/// Three gzip layers (the last one 4 MiB of varied bytes); the plaintext
/// layout's path and the expected files.
fn plain_image(dir: &Path) -> PathBuf {
    let big: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let tars = [
        tar_of(&[("etc/hostname", b"guest\n")]).unwrap(),
        tar_of(&[("srv/model.bin", &big)]).unwrap(),
        tar_of(&[("app/run.sh", b"#!/bin/sh\necho hi\n")]).unwrap(),
    ];
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
    let gz: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t).unwrap()).collect();
    let layers: Vec<(&str, &[u8])> = gz
        .iter()
        .map(|b| ("application/vnd.oci.image.layer.v1.tar+gzip", b.as_slice()))
        .collect();
    let plain = dir.join("plain");
    veil_image::oci::write_image_layout(&plain, None, &layers, &diff_ids).unwrap();
    plain
}

/// `veil image encrypt` of `plain` into `out` under the KEK file `kek`
/// named `kbs:///default/image-kek/app`.
fn encrypt(plain: &Path, out: &Path, kek: &Path) {
    let key = format!(
        "provider:attestation-agent:keypath={}::keyid=kbs:///default/image-kek/app",
        p(kek)
    );
    veil(&[
        "image",
        "encrypt",
        "--encryption-key",
        &key,
        p(plain),
        p(out),
    ]);
}

/// `veil image pull IMAGE --bundle BUNDLE --policy POLICY EXTRA…`:
/// (success, stderr).
fn veil_pull(image: &str, bundle: &Path, policy: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(VEIL)
        .args([
            "image",
            "pull",
            image,
            "--bundle",
            p(bundle),
            "--policy",
            policy,
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A pull from the plain-HTTP test registry with keys through the agent.
fn pull(s: &Setup, image: &str, bundle: &Path, policy: &str) -> (bool, String) {
    veil_pull(
        image,
        bundle,
        policy,
        &["--plain-http", "--agent", &s.agent_url],
    )
}

/// No layer of a refused image is left in the bundle.
fn assert_nothing_unpacked(bundle: &Path) {
    let left: Vec<_> = std::fs::read_dir(bundle.join("layers"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!bundle.join("config.json").exists());
}

async fn attestations(s: &Setup) -> String {
    let metrics = reqwest::get(format!("http://{}/metrics", s.broker.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("veil_attestations_total{outcome=\"affirming\",tee=\"snp\"}"))
        .unwrap_or("none")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_encrypted_image_pulled_through_the_agent_and_every_tampered_variant_refused() {
    let Some(reg) = LocalRegistry::start() else {
        return;
    };
    let s = setup_broker_and_agent();
    let d = s.dir.path();
    let r = &reg.addr;
    let plain = plain_image(d);
    let (key, public) = cosign_keys(d, "cosign");
    let policy = d.join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
              "{r}/secure":[{{"type":"sigstoreSigned","keyPath":"{}"}}],
              "{r}/open":[{{"type":"insecureAcceptAnything"}}]}}}}}}"#,
            p(&public)
        ),
    )
    .unwrap();
    let push = |layout: &Path, to: &str| {
        veil(&["image", "push", p(layout), to, "--plain-http"]);
    };
    let sign = |layout: &Path, identity: &str| {
        veil(&[
            "image",
            "sign",
            p(layout),
            "--key",
            p(&key),
            "--identity",
            identity,
        ]);
    };

    // Build, encrypt, sign, push.
    let enc = d.join("enc");
    encrypt(&plain, &enc, &s.kek);
    let app = format!("{r}/secure/app:1");
    sign(&enc, &app);
    push(&enc, &app);

    // The pull: policy, one attestation and one key lookup, three layers.
    let bundle = d.join("bundle");
    let (ok, msg) = pull(&s, &app, &bundle, p(&policy));
    assert!(ok, "{msg}");
    assert!(
        msg.contains("3 layer(s), 3 encrypted, 1 key lookup(s)"),
        "{msg}"
    );
    assert!(msg.contains("sigstoreSigned"), "{msg}");
    let mut layers: Vec<PathBuf> = std::fs::read_dir(bundle.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    layers.sort();
    assert_eq!(layers.len(), 3);
    assert_eq!(
        std::fs::read(layers[0].join("etc/hostname")).unwrap(),
        b"guest\n"
    );
    assert_eq!(
        std::fs::read(layers[1].join("srv/model.bin"))
            .unwrap()
            .len(),
        4 * 1024 * 1024
    );
    assert!(bundle.join("config.json").is_file());
    assert!(
        attestations(&s).await.ends_with(" 1"),
        "{}",
        attestations(&s).await
    );

    // An unsigned image: refused before any layer is fetched.
    let unsigned = d.join("unsigned");
    encrypt(&plain, &unsigned, &s.kek);
    push(&unsigned, &format!("{r}/secure/unsigned:1"));
    let b = d.join("b-unsigned");
    let (ok, msg) = pull(&s, &format!("{r}/secure/unsigned:1"), &b, p(&policy));
    assert!(!ok && msg.contains("none was found"), "{msg}");
    assert_nothing_unpacked(&b);
    // ... but accepted where the policy accepts anything.
    push(&unsigned, &format!("{r}/open/unsigned:1"));
    let (ok, msg) = pull(
        &s,
        &format!("{r}/open/unsigned:1"),
        &d.join("b-open"),
        p(&policy),
    );
    assert!(ok, "{msg}");

    // The signed image under another name: the identity check refuses it.
    push(&enc, &format!("{r}/secure/app:2"));
    let b = d.join("b-identity");
    let (ok, msg) = pull(&s, &format!("{r}/secure/app:2"), &b, p(&policy));
    assert!(!ok && msg.contains("does not match"), "{msg}");
    assert_nothing_unpacked(&b);

    // Signed by another key.
    let (stranger, _) = cosign_keys(d, "stranger");
    let other = d.join("other-signer");
    encrypt(&plain, &other, &s.kek);
    veil(&[
        "image",
        "sign",
        p(&other),
        "--key",
        p(&stranger),
        "--identity",
        &format!("{r}/secure/other:1"),
    ]);
    push(&other, &format!("{r}/secure/other:1"));
    let b = d.join("b-key");
    let (ok, msg) = pull(&s, &format!("{r}/secure/other:1"), &b, p(&policy));
    assert!(!ok && msg.contains("does not verify"), "{msg}");
    assert_nothing_unpacked(&b);

    // Encrypted under a KEK the broker does not hold for that kid.
    let wrong_kek = d.join("wrong-kek.bin");
    std::fs::write(&wrong_kek, [7u8; 32]).unwrap();
    let wrong = d.join("wrong-key");
    encrypt(&plain, &wrong, &wrong_kek);
    sign(&wrong, &format!("{r}/secure/wrong:1"));
    push(&wrong, &format!("{r}/secure/wrong:1"));
    let b = d.join("b-wrong");
    let (ok, msg) = pull(&s, &format!("{r}/secure/wrong:1"), &b, p(&policy));
    assert!(!ok && msg.contains("does not open"), "{msg}");
    assert_nothing_unpacked(&b);

    // One byte of one layer changed in the registry's storage.
    let tampered = d.join("tampered");
    encrypt(&plain, &tampered, &s.kek);
    sign(&tampered, &format!("{r}/secure/tampered:1"));
    push(&tampered, &format!("{r}/secure/tampered:1"));
    let image = veil_image::oci::layout_image(&tampered, None).unwrap();
    let big_layer = image.manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = reg.blob_file(&big_layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let b = d.join("b-tampered");
    let (ok, msg) = pull(&s, &format!("{r}/secure/tampered:1"), &b, p(&policy));
    assert!(
        !ok && msg.contains("does not match its descriptor"),
        "{msg}"
    );
    assert_nothing_unpacked(&b);

    // Still one attestation for everything the agent did.
    assert!(attestations(&s).await.ends_with(" 1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_and_verification_key_from_the_broker() {
    let Some(reg) = LocalRegistry::start() else {
        return;
    };
    let s = setup_broker_and_agent();
    let d = s.dir.path();
    let r = &reg.addr;
    let plain = plain_image(d);
    let (key, public) = cosign_keys(d, "cosign");
    let enc = d.join("enc");
    encrypt(&plain, &enc, &s.kek);
    // Pulled by digest: the repository in the signature is what counts.
    veil(&[
        "image",
        "sign",
        p(&enc),
        "--key",
        p(&key),
        "--identity",
        &format!("{r}/team/app"),
    ]);
    veil(&[
        "image",
        "push",
        p(&enc),
        &format!("{r}/team/app:v1"),
        "--plain-http",
    ]);
    let digest = veil_image::oci::layout_image(&enc, None).unwrap().digest;

    let policy = d.join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{r}/team":[
              {{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign/team",
                "signedIdentity":{{"type":"matchRepository"}}}}]}}}}}}"#
        ),
    )
    .unwrap();
    let url = format!("http://{}", s.broker.addr);
    for (path, file) in [
        ("default/security-policy/test", &policy),
        ("default/cosign/team", &public),
    ] {
        set_resource(&url, d, path, &["--file", p(file)]);
    }
    let by_digest = format!("{r}/team/app@{digest}");
    let (ok, msg) = pull(
        &s,
        &by_digest,
        &d.join("b1"),
        "kbs:///default/security-policy/test",
    );
    assert!(ok, "{msg}");
    assert!(msg.contains(&digest), "{msg}");
    // By tag, too (matchRepository).
    let (ok, msg) = pull(
        &s,
        &format!("{r}/team/app:v1"),
        &d.join("b2"),
        "kbs:///default/security-policy/test",
    );
    assert!(ok, "{msg}");
    // A policy resource the broker does not have: refused, nothing pulled.
    let (ok, msg) = pull(
        &s,
        &by_digest,
        &d.join("b3"),
        "kbs:///default/security-policy/none",
    );
    assert!(!ok && msg.contains("security-policy/none"), "{msg}");
    assert_nothing_unpacked(&d.join("b3"));
    // No policy at all: refused.
    let (ok, msg) = pull(&s, &by_digest, &d.join("b4"), p(&d.join("missing.json")));
    assert!(!ok && msg.contains("refusing to pull"), "{msg}");
}

/// Whether `name` runs (`name version_arg`); under CI=true it must.
fn tool(name: &str, version_arg: &str) -> bool {
    let found = Command::new(name)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{name} is required under CI=true"
        );
        eprintln!("\n!!!!! SKIPPED: {name} is not installed !!!!!\n");
    }
    found
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signatures checked by implementations other than Veil's. Debian's skopeo
/// is built with sigstore disabled ("Debian-local change"), so it cannot
/// verify or make cosign signatures itself; instead Go containers/image
/// (skopeo) fetches and parses the signature image Veil pushed and OpenSSL
/// verifies its signature over the payload; and in the other direction a
/// signature made by OpenSSL over a payload written by this test, pushed
/// by skopeo, is accepted by `veil image pull`.
#[test]
fn signatures_cross_checked_with_skopeo_and_openssl() {
    let Some(reg) = LocalRegistry::start() else {
        return;
    };
    if !tool("skopeo", "--version") || !tool("openssl", "version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = &reg.addr;
    let plain = plain_image(d);
    let (key, public) = cosign_keys(d, "cosign");
    let image = format!("{r}/signed/app:1");
    veil(&[
        "image",
        "sign",
        p(&plain),
        "--key",
        p(&key),
        "--identity",
        &image,
    ]);
    veil(&["image", "push", p(&plain), &image, "--plain-http"]);
    veil(&[
        "image",
        "verify",
        p(&plain),
        "--identity",
        &image,
        "--key",
        p(&public),
    ]);

    // Go: the image's digest, then the signature image at its .sig tag.
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    std::fs::write(d.join("manifest.json"), &raw).unwrap();
    let digest = String::from_utf8(run(
        Command::new("skopeo").args(["manifest-digest", p(&d.join("manifest.json"))])
    ))
    .unwrap()
    .trim()
    .to_string();
    let sig_tag = digest.replace(':', "-") + ".sig";
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{r}/signed/app:{sig_tag}"),
        &format!("oci:{}:sig", p(&d.join("sigcopy"))),
    ]));
    let sig = veil_image::oci::layout_image(&d.join("sigcopy"), Some("sig")).unwrap();
    let layer = &sig.manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = veil_image::oci::read_layout_blob(&d.join("sigcopy"), layer).unwrap();
    let payload_json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        payload_json["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(
        payload_json["critical"]["identity"]["docker-reference"],
        image.as_str()
    );
    assert_eq!(
        payload_json["critical"]["type"],
        "cosign container image signature"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig_der = base64::Engine::decode(
        &b64,
        layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    std::fs::write(d.join("payload"), &payload).unwrap();
    std::fs::write(d.join("sig.der"), &sig_der).unwrap();
    let ok = run(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-verify",
        p(&public),
        "-signature",
        p(&d.join("sig.der")),
        p(&d.join("payload")),
    ]));
    assert!(String::from_utf8_lossy(&ok).contains("Verified OK"));

    // The other way: payload by hand, signature by OpenSSL, pushed by skopeo.
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let fresh = plain_image(&src);
    let target = format!("{r}/other/app:1");
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--dest-tls-verify=false",
        &format!("oci:{}", p(&fresh)),
        &format!("docker://{target}"),
    ]));
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]));
    let digest = veil_image::blob_digest(&raw);
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{target}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":{{"creator":"openssl"}}}}"#
    );
    std::fs::write(d.join("payload2"), &payload).unwrap();
    let sig_der = run(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-sign",
        p(&key),
        p(&d.join("payload2")),
    ]));
    // A signature image laid out by hand: config, one payload layer.
    let lay = d.join("handmade");
    std::fs::create_dir_all(lay.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let dg = veil_image::blob_digest(bytes);
        std::fs::write(lay.join("blobs/sha256").join(&dg[7..]), bytes).unwrap();
        (dg, bytes.len())
    };
    let (pd, ps) = put(payload.as_bytes());
    let config = format!(
        r#"{{"architecture":"","os":"","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{pd}"]}}}}"#
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{pd}","size":{ps},"annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
        base64::Engine::encode(&b64, &sig_der)
    );
    let (md, ms) = put(manifest.as_bytes());
    std::fs::write(lay.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        lay.join("index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms}}}]}}"#),
    )
    .unwrap();
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--dest-tls-verify=false",
        &format!("oci:{}", p(&lay)),
        &format!(
            "docker://{r}/other/app:{}",
            digest.replace(':', "-") + ".sig"
        ),
    ]));
    let policy = d.join("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{r}/other":[{{"type":"sigstoreSigned","keyPath":"{}"}}]}}}}}}"#,
            p(&public)
        ),
    )
    .unwrap();
    let (ok, msg) = veil_pull(&target, &d.join("b-openssl"), p(&policy), &["--plain-http"]);
    assert!(ok, "{msg}");
    assert!(d.join("b-openssl/config.json").is_file());
}

/// `veil image keygen` writes cosign's encrypted key format; signing with
/// it needs the password.
#[test]
fn keygen_writes_cosign_keys_that_sign() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = plain_image(d);
    let pass = d.join("pass");
    std::fs::write(&pass, "correct horse\n").unwrap();
    let signer = d.join("signer");
    veil(&[
        "image",
        "keygen",
        "--out",
        p(&signer),
        "--passphrase-file",
        p(&pass),
    ]);
    let key = std::fs::read_to_string(signer.with_extension("key")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    let out = Command::new(VEIL)
        .args(["image", "keygen", "--out", p(&signer)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "overwrote a key");
    let sign = |password: &str| {
        Command::new(VEIL)
            .args([
                "image",
                "sign",
                p(&plain),
                "--key",
                p(&signer.with_extension("key")),
                "--identity",
                "registry.example/app:1",
            ])
            .env("COSIGN_PASSWORD", password)
            .output()
            .unwrap()
    };
    let bad = sign("wrong");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("password"));
    let good = sign("correct horse");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    veil(&[
        "image",
        "verify",
        p(&plain),
        "--identity",
        "registry.example/app:1",
        "--key",
        p(&signer.with_extension("pub")),
    ]);
    let out = Command::new(VEIL)
        .args([
            "image",
            "verify",
            p(&plain),
            "--identity",
            "registry.example/app:2",
            "--key",
            p(&signer.with_extension("pub")),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Pushes and pulls the plaintext image of `d` with extra registry flags:
/// (success, stderr) of the push if it failed, else of the pull.
fn push_and_pull(d: &Path, image: &str, flags: &[&str]) -> (bool, String) {
    let plain = plain_image(d);
    let out = Command::new(VEIL)
        .args(["image", "push", p(&plain), image])
        .args(flags)
        .output()
        .unwrap();
    if !out.status.success() {
        return (false, String::from_utf8_lossy(&out.stderr).to_string());
    }
    let policy = d.join("accept.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    veil_pull(image, &d.join("bundle"), p(&policy), flags)
}

/// A registry serving HTTPS with a private CA: trusted with
/// `--registry-ca`, refused without it.
#[test]
fn tls_registry_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let Some(reg) = LocalRegistry::start_with(&Options {
        tls: Some((cert.clone(), key)),
        token: None,
    }) else {
        return;
    };
    let image = format!("{}/tls/app:1", reg.addr);
    let (ok, msg) = push_and_pull(d, &image, &[]);
    assert!(!ok && msg.contains("certificate"), "{msg}");
    std::fs::create_dir_all(d.join("ok")).unwrap();
    let (ok, msg) = push_and_pull(&d.join("ok"), &image, &["--registry-ca", p(&cert)]);
    assert!(ok, "{msg}");
    assert!(d.join("ok/bundle/config.json").is_file());
}

/// The registry token flow: a 401 with a Bearer challenge, a token from
/// the realm (an ES256 JWT whose x5c chains to the registry's root bundle),
/// and the request again with it.
#[test]
fn registry_token_flow() {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let issuer = rcgen::generate_simple_self_signed(vec!["veil-token-issuer".to_string()]).unwrap();
    let bundle = d.join("token-root.pem");
    std::fs::write(&bundle, issuer.cert.pem()).unwrap();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &issuer.signing_key.serialize_der(),
    )
    .unwrap();
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT",
        "x5c": [base64::Engine::encode(&std_b64, issuer.cert.der())]});
    let claims = serde_json::json!({"iss": "veil-issuer", "sub": "tester", "aud": "veil-test",
        "exp": now + 3600, "nbf": now - 60, "iat": now, "jti": "t1",
        "access": [{"type": "repository", "name": "token/app", "actions": ["pull", "push"]}]});
    let signing_input = format!(
        "{}.{}",
        base64::Engine::encode(&url_b64, header.to_string()),
        base64::Engine::encode(&url_b64, claims.to_string())
    );
    let sig = signer
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
        )
        .unwrap();
    let jwt = format!(
        "{signing_input}.{}",
        base64::Engine::encode(&url_b64, sig.as_ref())
    );
    let body = serde_json::json!({"token": jwt}).to_string().into_bytes();
    let route = |scope: &str| {
        (
            format!("/token?scope={scope}&service=veil-test"),
            body.clone(),
        )
    };
    let realm = veil_testkit::StubHttp::start(
        vec![
            route("repository%3Atoken%2Fapp%3Apull%2Cpush"),
            route("repository%3Atoken%2Fapp%3Apull"),
        ],
        0,
    );
    let Some(reg) = LocalRegistry::start_with(&Options {
        tls: None,
        token: Some(TokenAuth {
            realm: format!("{}/token", realm.base),
            service: "veil-test".into(),
            issuer: "veil-issuer".into(),
            root_bundle: bundle,
        }),
    }) else {
        return;
    };
    let image = format!("{}/token/app:1", reg.addr);
    let (ok, msg) = push_and_pull(d, &image, &["--plain-http", "--creds", "tester:secret"]);
    assert!(ok, "{msg}");
    assert!(d.join("bundle/config.json").is_file());
    let hits = realm.hits();
    assert!(hits.iter().any(|h| h.contains("pull%2Cpush")), "{hits:?}");
    assert!(
        hits.iter().any(|h| h.ends_with("pull&service=veil-test")),
        "{hits:?}"
    );
    // A repository the token server gives nothing for: a clear refusal.
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (ok, msg) = push_and_pull(
        &other,
        &format!("{}/token/other:1", reg.addr),
        &["--plain-http"],
    );
    assert!(!ok && msg.contains("token realm answered 404"), "{msg}");
}

/// A throwaway GnuPG home with one RSA signing key: (home, fingerprint).
fn gpg_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let params = home.join("params");
    std::fs::write(
        &params,
        format!(
            "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\nName-Real: {name}\nName-Email: {name}@veil.test\nExpire-Date: 0\n%commit\n"
        ),
    )
    .unwrap();
    run(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--gen-key", p(&params)]));
    let list = String::from_utf8(run(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--list-keys", "--with-colons"])))
    .unwrap();
    let fpr = list
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| f.len() == 40))
        .unwrap()
        .to_string();
    (home, fpr)
}

/// GPG "simple signing" (`signedBy`), checked against an independent
/// implementation: skopeo (Go containers/image with gpgme) signs the pushed
/// manifest with a GPG key, the signature goes into a lookaside directory,
/// and `veil image pull --lookaside file://…` accepts it with the exported
/// public keyring (binary and armored); another key, another identity and
/// a missing signature are refused with nothing unpacked.
#[test]
fn gpg_simple_signing_from_skopeo() {
    let Some(reg) = LocalRegistry::start() else {
        return;
    };
    if !tool("skopeo", "--version") || !tool("gpg", "--version") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = &reg.addr;
    let plain = plain_image(d);
    let image = format!("{r}/gpg/app:1");
    veil(&["image", "push", p(&plain), &image, "--plain-http"]);
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    std::fs::write(d.join("manifest.json"), &raw).unwrap();
    let digest = sha256(&raw);
    let (home, fpr) = gpg_key(d, "signer");
    let (other_home, _) = gpg_key(d, "stranger");
    // skopeo's standalone signing: the same bytes `skopeo copy --sign-by`
    // stores in a lookaside store.
    let sign = |identity: &str, out: &Path| {
        run(Command::new("skopeo").env("GNUPGHOME", &home).args([
            "standalone-sign",
            p(&d.join("manifest.json")),
            identity,
            &fpr,
            "--output",
            p(out),
        ]));
    };
    let lookaside = d.join("sigstore");
    let sig_dir = lookaside.join(format!(
        "gpg/app@sha256={}",
        digest.trim_start_matches("sha256:")
    ));
    std::fs::create_dir_all(&sig_dir).unwrap();
    sign(&image, &sig_dir.join("signature-1"));
    // skopeo itself verifies what it made (sanity of the fixture).
    run(Command::new("skopeo").env("GNUPGHOME", &home).args([
        "standalone-verify",
        p(&d.join("manifest.json")),
        &image,
        &fpr,
        p(&sig_dir.join("signature-1")),
    ]));
    let export = |home: &Path, armor: bool, out: &Path| {
        let mut args = vec!["--export"];
        if armor {
            args.push("--armor");
        }
        let key = run(Command::new("gpg").env("GNUPGHOME", home).args(&args));
        std::fs::write(out, key).unwrap();
    };
    let pubring = d.join("signer.gpg");
    export(&home, false, &pubring);
    let armored = d.join("signer.asc");
    export(&home, true, &armored);
    let stranger = d.join("stranger.gpg");
    export(&other_home, false, &stranger);
    let policy = |name: &str, key: &Path| {
        let f = d.join(format!("{name}.json"));
        std::fs::write(
            &f,
            serde_json::json!({"default":[{"type":"reject"}],"transports":{"docker":{r.as_str():[
                {"type":"signedBy","keyType":"GPGKeys","keyPath": p(key)}]}}})
            .to_string(),
        )
        .unwrap();
        f
    };
    let look = format!("file://{}", p(&lookaside));
    let pull_with = |pol: &Path, bundle: &Path, extra: &[&str]| {
        let mut args = vec!["--plain-http"];
        args.extend_from_slice(extra);
        veil_pull(&image, bundle, p(pol), &args)
    };
    for (name, key) in [("binary", &pubring), ("armored", &armored)] {
        let bundle = d.join(format!("bundle-{name}"));
        let (ok, msg) = pull_with(&policy(name, key), &bundle, &["--lookaside", &look]);
        assert!(ok, "{name}: {msg}");
        assert!(msg.contains("signedBy (GPG)"), "{msg}");
        let layers = std::fs::read_dir(bundle.join("layers")).unwrap().count();
        assert_eq!(layers, 3, "{name}");
    }
    // The same signature checked on the build side, on the OCI layout.
    let out = Command::new(VEIL)
        .args([
            "image",
            "verify",
            p(&plain),
            "--identity",
            &image,
            "--policy",
            p(&policy("layout", &pubring)),
            "--lookaside",
            &look,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another key's keyring.
    let bundle = d.join("bundle-stranger");
    let (ok, err) = pull_with(
        &policy("stranger", &stranger),
        &bundle,
        &["--lookaside", &look],
    );
    assert!(!ok);
    assert!(
        err.contains("not signed by a key of the policy's keyring"),
        "{err}"
    );
    assert_nothing_unpacked(&bundle);
    // No lookaside store given: no signature found.
    let bundle = d.join("bundle-none");
    let (ok, err) = pull_with(&policy("none", &pubring), &bundle, &[]);
    assert!(!ok);
    assert!(err.contains("none was found"), "{err}");
    assert_nothing_unpacked(&bundle);
    // Signed for another identity.
    sign(&format!("{r}/gpg/other:1"), &sig_dir.join("signature-1"));
    let bundle = d.join("bundle-identity");
    let (ok, err) = pull_with(
        &policy("identity", &pubring),
        &bundle,
        &["--lookaside", &look],
    );
    assert!(!ok);
    assert!(err.contains("does not match"), "{err}");
    assert_nothing_unpacked(&bundle);
}
