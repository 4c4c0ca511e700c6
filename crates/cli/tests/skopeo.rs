//! Interoperability with Go ocicrypt through Debian's `skopeo`: an image
//! encrypted by skopeo for JWE recipients (EC and RSA) decrypts with Veil,
//! and an image encrypted by Veil decrypts with skopeo. Skipped loudly
//! without skopeo; a failure under CI=true (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;

use common::{VEIL, p};

fn have_skopeo() -> bool {
    if Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("skopeo is not installed (CI=true requires the interoperability test)");
    }
    eprintln!("\n!!!!! SKIPPED: skopeo not installed (apt-get install skopeo) !!!!!\n");
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A one-layer gzip image tagged `v1`.
fn layout(dir: &Path) {
    let tar = veil_image::unpack::tar_of(&[("etc/motd", &b"confidential\n".repeat(5000))]).unwrap();
    let diff_id = format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &tar))
    );
    let gz = veil_image::unpack::gzip(&tar).unwrap();
    veil_image::oci::write_image_layout(
        dir,
        Some("v1"),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", &gz)],
        &[diff_id],
    )
    .unwrap();
}

fn layer(dir: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0]["digest"].as_str().unwrap()[7..];
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(m)).unwrap()).unwrap();
    manifest["layers"][0].clone()
}

#[test]
fn veil_and_skopeo_read_each_others_jwe_images() {
    if !have_skopeo() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for args in [
        vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            p(&d.join("ec.pem")),
        ],
        vec![
            "ec",
            "-in",
            p(&d.join("ec.pem")),
            "-pubout",
            "-out",
            p(&d.join("ec-pub.pem")),
        ],
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p(&d.join("rsa.pem")),
        ],
        vec![
            "pkey",
            "-in",
            p(&d.join("rsa.pem")),
            "-pubout",
            "-out",
            p(&d.join("rsa-pub.pem")),
        ],
        vec![
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            p(&d.join("ec.pem")),
            "-out",
            p(&d.join("ec-pk8.pem")),
        ],
    ] {
        run(Command::new("openssl").args(args));
    }
    let plain = d.join("plain");
    layout(&plain);
    let original = layer(&plain);
    let oci = |dir: &Path| format!("oci:{}:v1", dir.display());

    // skopeo (Go ocicrypt) encrypts for an EC and an RSA recipient.
    run(Command::new("skopeo").args([
        "copy",
        "--encryption-key",
        &format!("jwe:{}", p(&d.join("ec-pub.pem"))),
        "--encryption-key",
        &format!("jwe:{}", p(&d.join("rsa-pub.pem"))),
        &oci(&plain),
        &oci(&d.join("by-skopeo")),
    ]));
    let enc = layer(&d.join("by-skopeo"));
    assert_eq!(
        enc["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    );
    assert!(enc["annotations"]["org.opencontainers.image.enc.keys.jwe"].is_string());
    // Veil decrypts it with either private key (EC as SEC1 or PKCS#8, RSA).
    for key in ["ec.pem", "ec-pk8.pem", "rsa.pem"] {
        let out = d.join(format!("veil-dec-{key}"));
        run(Command::new(VEIL).args([
            "image",
            "decrypt",
            "--decryption-key",
            p(&d.join(key)),
            p(&d.join("by-skopeo")),
            p(&out),
        ]));
        let l = layer(&out);
        assert_eq!(l["digest"], original["digest"], "{key}");
        assert_eq!(l["mediaType"], original["mediaType"]);
    }
    // And unpacks it in one pass.
    let msg = run(Command::new(VEIL).args([
        "image",
        "unpack",
        p(&d.join("by-skopeo")),
        "--bundle",
        p(&d.join("bundle")),
        "--decryption-key",
        p(&d.join("ec.pem")),
    ]));
    assert!(msg.contains("unpacked 1 layer(s) (1 encrypted"), "{msg}");

    // Veil encrypts; skopeo decrypts with either key.
    run(Command::new(VEIL).args([
        "image",
        "encrypt",
        "--encryption-key",
        &format!("jwe:{}", p(&d.join("ec-pub.pem"))),
        "--encryption-key",
        &format!("jwe:{}", p(&d.join("rsa-pub.pem"))),
        p(&plain),
        p(&d.join("by-veil")),
    ]));
    for key in ["ec-pk8.pem", "rsa.pem"] {
        let out = d.join(format!("skopeo-dec-{key}"));
        run(Command::new("skopeo").args([
            "copy",
            "--decryption-key",
            p(&d.join(key)),
            &oci(&d.join("by-veil")),
            &oci(&out),
        ]));
        assert_eq!(layer(&out)["digest"], original["digest"], "{key}");
    }

    // One flipped byte of skopeo's ciphertext: refused, no layout written.
    let blob = d
        .join("by-skopeo/blobs/sha256")
        .join(&enc["digest"].as_str().unwrap()[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let out = Command::new(VEIL)
        .args([
            "image",
            "decrypt",
            "--decryption-key",
            p(&d.join("ec.pem")),
            p(&d.join("by-skopeo")),
            p(&d.join("tampered")),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!d.join("tampered/index.json").exists());
}
