//! `veil keyprovider`: an ocicrypt key provider (`cmd` transport, or gRPC
//! with `--grpc ADDR`, see `keyprovider_grpc`) for
//! encrypted container images, compatible with the Confidential
//! Containers `attestation-agent` provider's annotation packet.
//!
//! * Build side (skopeo, containerd imgcrypt): `--encryption-key
//!   provider:veil:keypath=KEK_FILE::keyid=kbs:///default/key/1` wraps the
//!   layer key under the 32-byte KEK from `keypath` (which the broker must
//!   hold as the resource `keyid`).
//! * Guest side: an unwrap fetches the KEK named by the packet's `kid`
//!   through the Veil agent's workload API (`--agent`, which attests to the
//!   broker once per token) and unwraps the layer key.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use veil_image::keyprovider::{Op, Request, unwrap_response, wrap_response};
use veil_image::packet::AnnotationPacket;

use crate::EXIT_ERROR;

#[derive(Debug, Args)]
pub struct KeyProviderArgs {
    /// The provider name ocicrypt was configured with (the key of
    /// `key-providers` in OCICRYPT_KEYPROVIDER_CONFIG).
    #[arg(long, default_value = "veil")]
    pub provider: String,
    /// The Veil agent's workload API (unwrap fetches KEKs through it).
    #[arg(long, env = "VEIL_AGENT_URL", default_value = "http://127.0.0.1:8006")]
    pub agent: String,
    /// Serve ocicrypt's gRPC transport on this address (e.g.
    /// 127.0.0.1:50000, for `{"grpc": "127.0.0.1:50000"}` in the ocicrypt
    /// configuration) instead of answering one request on stdin.
    #[arg(long, value_name = "ADDR")]
    pub grpc: Option<std::net::SocketAddr>,
}

/// A KEK file: 32 raw bytes, or 64 hex digits (a trailing newline allowed).
pub(crate) fn read_kek(path: &Path) -> Result<[u8; 32], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(k) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(k);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: not a 32-byte key", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or_else(|| {
            format!(
                "{}: not a 32-byte key (raw, or 64 hex digits)",
                path.display()
            )
        })
}

async fn handle(a: &KeyProviderArgs, input: &[u8]) -> Result<serde_json::Value, String> {
    match Request::parse(input, &a.provider).map_err(|e| e.to_string())? {
        Op::Wrap { specs, optsdata } => {
            let [spec] = specs.as_slice() else {
                return Err("one recipient per key-provider call".into());
            };
            let private = veil_image::layer::PrivateOptions::from_json(&optsdata)
                .map_err(|e| e.to_string())?;
            let kek = read_kek(Path::new(&spec.keypath))?;
            let packet =
                AnnotationPacket::wrap(&spec.keyid, &kek, &private).map_err(|e| e.to_string())?;
            Ok(wrap_response(packet.to_json().map_err(|e| e.to_string())?))
        }
        Op::Unwrap(packet) => {
            let body = resource_from_agent(&a.agent, &packet.kid).await?;
            let private = packet.unwrap(&body).map_err(|e| e.to_string())?;
            Ok(unwrap_response(
                private.to_json().map_err(|e| e.to_string())?,
            ))
        }
    }
}

/// The broker resource named by a `kbs:///` URI (a KEK, a policy, a key),
/// through the Veil agent's workload API (which attests to the broker when
/// it has no valid token).
pub(crate) async fn resource_from_agent(agent: &str, kid: &str) -> Result<Vec<u8>, String> {
    let path = veil_image::packet::resource_path(kid).map_err(|e| e.to_string())?;
    let agent = agent.trim_end_matches('/');
    let r = reqwest::get(format!("{agent}/cdh/resource/{path}"))
        .await
        .map_err(|e| format!("agent at {agent}: {e}"))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| format!("agent: {e}"))?;
    if !status.is_success() {
        let detail: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        return Err(format!(
            "the agent could not get {kid}: {status} {}",
            detail["error"].as_str().unwrap_or("")
        ));
    }
    Ok(body.to_vec())
}

/// Serves the gRPC transport until SIGTERM/ctrl-c: the same requests as
/// the `cmd` transport, the method saying whether it wraps or unwraps.
async fn serve_grpc(a: KeyProviderArgs, addr: std::net::SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match listener.local_addr() {
        Ok(local) => println!("veil keyprovider listening on {local}"),
        Err(e) => eprintln!("warning: {e}"),
    }
    let args = std::sync::Arc::new(a);
    let handler: crate::keyprovider_grpc::Handler = std::sync::Arc::new(move |wrap, input| {
        let args = args.clone();
        Box::pin(async move {
            let is_wrap = serde_json::from_slice::<serde_json::Value>(&input)
                .ok()
                .and_then(|v| v.get("op").and_then(|o| o.as_str()).map(|o| o == "keywrap"));
            if is_wrap != Some(wrap) {
                return Err(format!(
                    "the request's op does not match the {} method",
                    if wrap { "WrapKey" } else { "UnWrapKey" }
                ));
            }
            let out = handle(&args, &input).await?;
            serde_json::to_vec(&out).map_err(|e| e.to_string())
        })
    });
    let service = crate::keyprovider_grpc::KeyProviderService::new(handler);
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            veil_broker::shutdown_signal(),
        )
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

pub async fn run(a: KeyProviderArgs) -> ExitCode {
    if let Some(addr) = a.grpc {
        return serve_grpc(a, addr).await;
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("error: reading the request: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    match handle(&a, &input).await {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
