//! `veil keyprovider` end to end: a layer encrypted with ocicrypt's cipher,
//! its key wrapped by the key provider under a KEK file, the KEK held by a
//! real broker, and the key unwrapped through a real agent on the
//! simulated SNP TEE (attestation in between), in the byte encodings Go
//! clients send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};
use veil_image::layer::{PrivateOptions, VecStage, decrypt_to, encrypt_to};

mod common;

use common::{VEIL, p, setup_broker_and_agent as setup, veil};

/// Runs `veil keyprovider ARGS` with `request` on stdin.
fn keyprovider(args: &[&str], request: &Value) -> (bool, Value, String) {
    let mut child = Command::new(VEIL)
        .arg("keyprovider")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrap_with_a_kek_file_unwrap_through_the_attested_agent() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = setup();
    let (kek, agent_url) = (s.kek.clone(), s.agent_url.clone());
    // Build side: encrypt a layer, wrap its key (Go encodes []byte as base64).
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut ciphertext = Vec::new();
    let enc = encrypt_to(layer.as_slice(), &mut ciphertext).unwrap();
    let spec = format!("keypath={}::keyid=kbs:///default/image-kek/app", p(&kek));
    let wrap = json!({"op": "keywrap", "keywrapparams": {
        "ec": {"Parameters": {"veil": [b64.encode(&spec)]}, "DecryptConfig": {"Parameters": {}}},
        "optsdata": b64.encode(enc.private.to_json().unwrap())}, "keyunwrapparams": {}});
    let (ok, out, err) = keyprovider(&[], &wrap);
    assert!(ok, "{err}");
    let packet = bytes(&out["keywrapresults"]["annotation"]);
    let packet_json: Value = serde_json::from_slice(&packet).unwrap();
    assert_eq!(packet_json["kid"], "kbs:///default/image-kek/app");
    assert_eq!(packet_json["wrap_type"], "A256GCM");
    assert!(!String::from_utf8_lossy(&packet).contains(&enc.private.symkey));

    // Guest side: unwrap through the agent (which attests to the broker).
    let unwrap = json!({"op": "keyunwrap", "keywrapparams": {"ec": null, "optsdata": null},
        "keyunwrapparams": {"dc": {"Parameters": {"veil": []}}, "annotation": b64.encode(&packet)}});
    let (ok, out, err) = keyprovider(&["--agent", &agent_url], &unwrap);
    assert!(ok, "{err}");
    let private = PrivateOptions::from_json(&bytes(&out["keyunwrapresults"]["optsdata"])).unwrap();
    assert_eq!(private, enc.private);
    let mut plain = Vec::new();
    decrypt_to(
        ciphertext.as_slice(),
        &enc.public,
        &private,
        VecStage::new(&mut plain),
    )
    .unwrap();
    assert_eq!(plain, layer);

    // The same request with the annotation as a byte array (ocicrypt-rs).
    let mut unwrap_rs = unwrap.clone();
    unwrap_rs["keyunwrapparams"]["annotation"] = serde_json::to_value(&packet).unwrap();
    assert!(keyprovider(&["--agent", &agent_url], &unwrap_rs).0);

    // A key the broker does not hold: a clear refusal, nothing on stdout.
    let mut other: Value = packet_json.clone();
    other["kid"] = "kbs:///default/image-kek/missing".into();
    let mut req = unwrap.clone();
    req["keyunwrapparams"]["annotation"] = b64.encode(other.to_string()).into();
    let (ok, out, err) = keyprovider(&["--agent", &agent_url], &req);
    assert!(!ok && out.is_null());
    assert!(err.contains("kbs:///default/image-kek/missing"), "{err}");
    // A KEK file of the wrong size is refused at wrap time.
    std::fs::write(&kek, [0u8; 31]).unwrap();
    let (ok, _, err) = keyprovider(&[], &wrap);
    assert!(!ok && err.contains("32-byte"), "{err}");
}

/// An OCI layout with one gzip-typed layer (its bytes as given).
fn layout(dir: &Path, layer: &[u8]) {
    veil_image::oci::write_image_layout(
        dir,
        None,
        &[("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        &[],
    )
    .unwrap();
}

fn sha256(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b))
    )
}

fn first_layer(dir: &Path) -> (Value, Vec<u8>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &Value| {
        std::fs::read(
            dir.join("blobs/sha256").join(
                d["digest"]
                    .as_str()
                    .unwrap()
                    .strip_prefix("sha256:")
                    .unwrap(),
            ),
        )
        .unwrap()
    };
    let manifest: Value = serde_json::from_slice(&blob(&index["manifests"][0])).unwrap();
    let l = manifest["layers"][0].clone();
    let bytes = blob(&l);
    (l, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn image_encrypt_then_decrypt_through_the_attested_agent() {
    let s = setup();
    let d = s.dir.path();
    let layer: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
    layout(&d.join("plain"), &layer);
    let key = format!(
        "provider:attestation-agent:keypath={}::keyid=kbs:///default/image-kek/app",
        p(&s.kek)
    );
    veil(&[
        "image",
        "encrypt",
        "--encryption-key",
        &key,
        p(&d.join("plain")),
        p(&d.join("enc")),
    ]);
    let (l, bytes) = first_layer(&d.join("enc"));
    assert_eq!(
        l["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
    );
    assert_ne!(bytes, layer);
    // In the guest: keys through the agent, after attestation.
    veil(&[
        "image",
        "decrypt",
        "--decryption-key",
        "provider:attestation-agent",
        "--agent",
        &s.agent_url,
        p(&d.join("enc")),
        p(&d.join("dec")),
    ]);
    let (l, bytes) = first_layer(&d.join("dec"));
    assert_eq!(
        l["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(bytes, layer);
    // Offline, with the KEK file; and a wrong KEK is refused.
    veil(&[
        "image",
        "decrypt",
        "--decryption-key",
        &format!("provider:x:keypath={}", p(&s.kek)),
        p(&d.join("enc")),
        p(&d.join("dec2")),
    ]);
    std::fs::write(d.join("other.bin"), [1u8; 32]).unwrap();
    let out = Command::new(VEIL)
        .args([
            "image",
            "decrypt",
            "--decryption-key",
            &format!("provider:x:keypath={}", p(&d.join("other.bin"))),
            p(&d.join("enc")),
            p(&d.join("dec3")),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.join("dec3/index.json").exists());
    // A JWE recipient whose key file is missing: a clear error naming it.
    let out = Command::new(VEIL)
        .args([
            "image",
            "encrypt",
            "--encryption-key",
            "jwe:pub.pem",
            p(&d.join("plain")),
            p(&d.join("enc4")),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pub.pem"));
}

#[tokio::test(flavor = "multi_thread")]
async fn image_unpack_through_the_attested_agent() {
    use veil_image::unpack::{gzip, tar_of};
    let s = setup();
    let d = s.dir.path();
    // A two-layer image with real gzip tars and their diff_ids.
    let plain = d.join("plain");
    let tars = [
        tar_of(&[("etc/hostname", b"guest\n")]).unwrap(),
        tar_of(&[("srv/model.bin", &[3u8; 200_000])]).unwrap(),
    ];
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
    let gz: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t).unwrap()).collect();
    let layers: Vec<(&str, &[u8])> = gz
        .iter()
        .map(|b| ("application/vnd.oci.image.layer.v1.tar+gzip", b.as_slice()))
        .collect();
    veil_image::oci::write_image_layout(&plain, None, &layers, &diff_ids).unwrap();
    let key = format!(
        "provider:attestation-agent:keypath={}::keyid=kbs:///default/image-kek/app",
        p(&s.kek)
    );
    veil(&[
        "image",
        "encrypt",
        "--encryption-key",
        &key,
        p(&plain),
        p(&d.join("enc")),
    ]);
    // In the guest: one attestation, one key lookup, both layers unpacked.
    let out = Command::new(VEIL)
        .args([
            "image",
            "unpack",
            p(&d.join("enc")),
            "--bundle",
            p(&d.join("bundle")),
            "--agent",
            &s.agent_url,
        ])
        .output()
        .unwrap();
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("unpacked 2 layer(s) (2 encrypted, 1 key lookup(s))"),
        "{msg}"
    );
    let layers: Vec<_> = std::fs::read_dir(d.join("bundle/layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(layers.len(), 2);
    let l0 = layers
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("0-"))
        .unwrap();
    let l1 = layers
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("1-"))
        .unwrap();
    assert_eq!(std::fs::read(l0.join("etc/hostname")).unwrap(), b"guest\n");
    assert_eq!(
        std::fs::read(l1.join("srv/model.bin")).unwrap(),
        vec![3u8; 200_000]
    );
    assert!(d.join("bundle/config.json").is_file());
    // One attestation for the whole image, counted by the broker.
    let metrics = reqwest::get(format!("http://{}/metrics", s.broker.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("veil_attestations_total{outcome=\"affirming\",tee=\"snp\"} 1\n"),
        "{metrics}"
    );
}

/// ocicrypt's gRPC messages, declared here from `keyprovider.proto` so the
/// test client is independent of the server's code.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtocolInput {
    #[prost(bytes = "vec", tag = "1")]
    key_provider_key_wrap_protocol_input: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtocolOutput {
    #[prost(bytes = "vec", tag = "1")]
    key_provider_key_wrap_protocol_output: Vec<u8>,
}

async fn grpc_call(
    url: &str,
    method: &'static str,
    request: &Value,
) -> Result<Value, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let out: tonic::Response<ProtocolOutput> = grpc
        .unary(
            tonic::Request::new(ProtocolInput {
                key_provider_key_wrap_protocol_input: request.to_string().into_bytes(),
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static(method),
            tonic_prost::ProstCodec::<ProtocolInput, ProtocolOutput>::default(),
        )
        .await?;
    Ok(serde_json::from_slice(&out.into_inner().key_provider_key_wrap_protocol_output).unwrap())
}

/// The gRPC transport (`veil keyprovider --grpc`): WrapKey and UnWrapKey
/// carry the same JSON as the cmd transport; the unwrap goes through the
/// attested agent; a request whose op contradicts its method, an unknown
/// method and a key the broker lacks are refused with gRPC errors.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_transport_wraps_and_unwraps() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = setup();
    let server = common::spawn(
        &[
            "keyprovider",
            "--grpc",
            "127.0.0.1:0",
            "--agent",
            &s.agent_url,
        ],
        "veil keyprovider listening on ",
    );
    let url = format!("http://{}", server.addr);
    let layer: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let mut ciphertext = Vec::new();
    let enc = encrypt_to(layer.as_slice(), &mut ciphertext).unwrap();
    let spec = format!("keypath={}::keyid=kbs:///default/image-kek/app", p(&s.kek));
    let wrap = json!({"op": "keywrap", "keywrapparams": {
        "ec": {"Parameters": {"veil": [b64.encode(&spec)]}, "DecryptConfig": {"Parameters": {}}},
        "optsdata": b64.encode(enc.private.to_json().unwrap())}, "keyunwrapparams": {}});
    let out = grpc_call(&url, "/keyprovider.KeyProviderService/WrapKey", &wrap)
        .await
        .unwrap();
    let packet = bytes(&out["keywrapresults"]["annotation"]);
    let unwrap = json!({"op": "keyunwrap", "keywrapparams": {"ec": null, "optsdata": null},
        "keyunwrapparams": {"dc": {"Parameters": {"veil": []}}, "annotation": b64.encode(&packet)}});
    let out = grpc_call(&url, "/keyprovider.KeyProviderService/UnWrapKey", &unwrap)
        .await
        .unwrap();
    let private = PrivateOptions::from_json(&bytes(&out["keyunwrapresults"]["optsdata"])).unwrap();
    assert_eq!(private, enc.private);
    // The op must match the method.
    let e = grpc_call(&url, "/keyprovider.KeyProviderService/WrapKey", &unwrap)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = grpc_call(&url, "/keyprovider.KeyProviderService/Nope", &wrap)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e}");
    // A key the broker does not hold.
    let mut other: Value = serde_json::from_slice(&packet).unwrap();
    other["kid"] = "kbs:///default/image-kek/missing".into();
    let mut req = unwrap.clone();
    req["keyunwrapparams"]["annotation"] = b64.encode(other.to_string()).into();
    let e = grpc_call(&url, "/keyprovider.KeyProviderService/UnWrapKey", &req)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
}
