//! A client of the OCI distribution API (what `docker-registry`, Harbor,
//! Quay, ghcr.io and Docker Hub serve): manifests and blobs, pulled and
//! pushed, with the registry token flow.
//!
//! * Every manifest is hashed as received and must match the digest it was
//!   asked for (and the registry's `Docker-Content-Digest`); blobs are
//!   hashed while they stream and fail at the end unless digest and size
//!   are the descriptor's.
//! * Auth: anonymous, or `user:password`; a `401` with
//!   `WWW-Authenticate: Bearer realm=…,service=…,scope=…` is answered by
//!   fetching a token from the realm (credentials sent only to an `https`
//!   realm, or any realm when plain HTTP was explicitly allowed), a
//!   `Basic` challenge by the credentials. Tokens are kept per scope.
//! * Plain HTTP only when asked (`plain_http`); TLS otherwise, with an
//!   extra CA when given.
//!
//! Why hand-written: the Rust registry clients (oci-client and the like)
//! bring their own TLS and HTTP stacks and do not expose streaming blob
//! reads into our one-pass decrypt-and-unpack; the API itself is five
//! endpoints.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::ImageError;
use crate::reference::{Reference, valid_digest};

/// Manifests larger than this are refused (real ones are a few KiB).
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;
const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;

/// What a pull accepts as a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `http://` instead of `https://` (a registry on loopback in tests).
    pub plain_http: bool,
    /// Extra trusted CA certificates (PEM) for the registry's TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// `user:password` for the registry (or its token realm).
    pub credentials: Option<String>,
}

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:` of `bytes`, as computed here.
    pub digest: String,
}

/// A registry client; cheap to share (`&self` everywhere).
#[derive(Debug)]
pub struct Registry {
    http: reqwest::Client,
    options: RegistryOptions,
    /// Bearer tokens by `host|scope`.
    tokens: Mutex<HashMap<String, String>>,
}

fn reg_err(what: impl std::fmt::Display) -> ImageError {
    ImageError::Registry(what.to_string())
}

/// A `WWW-Authenticate` challenge: the scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// Parses `Scheme k="v", k2=v2` (quoted strings with `\` escapes).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = match header.split_once(' ') {
            Some((s, r)) => (s, r.trim_start()),
            None => (header, ""),
        };
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut params = HashMap::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return None;
            }
            let after = after.trim_start();
            let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.push(chars.next()?.1),
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end?;
                (value, q.get(end.saturating_add(1)..)?)
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after.get(..end)?.trim().to_string(), after.get(end..)?)
            };
            params.insert(key, value);
            let remaining = remaining.trim_start();
            rest = match remaining.strip_prefix(',') {
                Some(r) => r.trim_start(),
                None if remaining.is_empty() => "",
                None => return None,
            };
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// The `errors[].code` and `message` of a distribution error body, or a
/// short prefix of the body when it is something else.
fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(errors) = v.get("errors").and_then(|e| e.as_array())
    {
        return errors
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.get("code").and_then(|c| c.as_str()).unwrap_or("?"),
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body.get(..200.min(body.len())).unwrap_or_default());
    text.trim().to_string()
}

/// Reads a body of at most `max` bytes.
async fn read_limited(mut r: Response, max: usize, what: &str) -> Result<Vec<u8>, ImageError> {
    if r.content_length().is_some_and(|n| n > max as u64) {
        return Err(reg_err(format!("{what} is larger than {max} bytes")));
    }
    let mut out = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| reg_err(format!("{what}: {e}")))?
    {
        if out.len().saturating_add(chunk.len()) > max {
            return Err(reg_err(format!("{what} is larger than {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

impl Registry {
    pub fn new(options: RegistryOptions) -> Result<Self, ImageError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("veil/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30));
        if let Some(pem) = &options.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| reg_err(format!("registry CA: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(Registry {
            http: b.build().map_err(reg_err)?,
            options,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, image: &Reference, tail: &str) -> String {
        let scheme = if self.options.plain_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}/{tail}", image.api_host(), image.path())
    }

    fn basic(&self) -> Option<(String, String)> {
        let c = self.options.credentials.as_deref()?;
        let (u, p) = c.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    fn token_key(image: &Reference, push: bool) -> String {
        format!("{}|{}|{push}", image.api_host(), image.path())
    }

    /// Sends a request built by `build`, answering one auth challenge.
    async fn send(
        &self,
        image: &Reference,
        push: bool,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let key = Self::token_key(image, push);
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let with_auth = |req: RequestBuilder, token: Option<&str>| match token {
            Some(t) if t.starts_with("Basic ") => req.header(AUTHORIZATION, t),
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let first = with_auth(build(&self.http), cached.as_deref())
            .send()
            .await
            .map_err(|e| reg_err(format!("{}: {e}", image.api_host())))?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let token = self.authenticate(image, push, first.headers()).await?;
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(key, token.clone());
        }
        with_auth(build(&self.http), Some(&token))
            .send()
            .await
            .map_err(|e| reg_err(format!("{}: {e}", image.api_host())))
    }

    /// Answers a 401: a bearer token from the realm, or basic credentials.
    async fn authenticate(
        &self,
        image: &Reference,
        push: bool,
        headers: &HeaderMap,
    ) -> Result<String, ImageError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| reg_err("401 without a usable WWW-Authenticate challenge"))?;
        match challenge.scheme.as_str() {
            "basic" => {
                use base64::Engine;
                let (u, p) = self
                    .basic()
                    .ok_or_else(|| reg_err("the registry wants credentials (--creds)"))?;
                Ok(format!("Basic {}", crate::b64().encode(format!("{u}:{p}"))))
            }
            "bearer" => {
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or_else(|| reg_err("bearer challenge without a realm"))?;
                let mut realm_url =
                    reqwest::Url::parse(realm).map_err(|e| reg_err(format!("token realm: {e}")))?;
                if realm_url.scheme() != "https" && !self.options.plain_http {
                    return Err(reg_err(format!(
                        "token realm {realm} is not https (refused; credentials and tokens would travel in the clear)"
                    )));
                }
                let scope = format!(
                    "repository:{}:{}",
                    image.path(),
                    if push { "pull,push" } else { "pull" }
                );
                {
                    let mut q = realm_url.query_pairs_mut();
                    q.append_pair("scope", &scope);
                    if let Some(s) = challenge.params.get("service") {
                        q.append_pair("service", s);
                    }
                }
                let mut req = self.http.request(Method::GET, realm_url);
                if let Some((u, p)) = self.basic() {
                    req = req.basic_auth(u, Some(p));
                }
                let r = req
                    .send()
                    .await
                    .map_err(|e| reg_err(format!("token realm: {e}")))?;
                let status = r.status();
                let body = read_limited(r, MAX_TOKEN_RESPONSE, "token response").await?;
                if !status.is_success() {
                    return Err(reg_err(format!(
                        "token realm answered {status}: {}",
                        error_detail(&body)
                    )));
                }
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|_| reg_err("token response is not JSON"))?;
                v.get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| reg_err("token response without a token"))
            }
            other => Err(reg_err(format!("unsupported auth scheme {other:?}"))),
        }
    }

    async fn fail(r: Response, what: &str) -> ImageError {
        let status = r.status();
        let body = read_limited(r, 64 * 1024, what).await.unwrap_or_default();
        reg_err(format!("{what}: {status} {}", error_detail(&body)))
    }

    /// Fetches a manifest by tag or digest; its bytes must hash to the
    /// digest asked for (when one was) and to the registry's
    /// `Docker-Content-Digest` (when sent).
    pub async fn manifest(
        &self,
        image: &Reference,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, ImageError> {
        let url = self.url(image, &format!("manifests/{reference}"));
        let r = self
            .send(image, false, |c| {
                c.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(Self::fail(r, &format!("manifest {image}")).await);
        }
        let media_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or_default().trim().to_string())
            .unwrap_or_default();
        let header_digest = r
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(r, MAX_MANIFEST, "manifest").await?;
        let digest = crate::blob_digest(&bytes);
        if valid_digest(reference) && reference != digest {
            return Err(reg_err(format!(
                "manifest {image}: asked for {reference}, the bytes hash to {digest}"
            )));
        }
        if let Some(h) = header_digest
            && h.starts_with("sha256:")
            && h != digest
        {
            return Err(reg_err(format!(
                "manifest {image}: Docker-Content-Digest {h} but the bytes hash to {digest}"
            )));
        }
        // The body's own mediaType wins when the header is generic.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or(media_type);
        Ok(Some(FetchedManifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Starts a blob download; the caller reads it with [`BlobStream`].
    pub async fn blob(
        &self,
        image: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<BlobStream, ImageError> {
        if !valid_digest(digest) {
            return Err(reg_err(format!(
                "blob digest {digest:?} is not sha256:<hex>"
            )));
        }
        let url = self.url(image, &format!("blobs/{digest}"));
        let r = self.send(image, false, |c| c.get(&url)).await?;
        if !r.status().is_success() {
            return Err(Self::fail(r, &format!("blob {digest}")).await);
        }
        if r.content_length().is_some_and(|n| n != size) {
            return Err(reg_err(format!(
                "blob {digest}: the registry sends {} bytes, the descriptor says {size}",
                r.content_length().unwrap_or_default()
            )));
        }
        Ok(BlobStream {
            response: r,
            ctx: digest::Context::new(&digest::SHA256),
            read: 0,
            digest: digest.to_string(),
            size,
        })
    }

    /// A whole (small) blob, checked.
    pub async fn blob_bytes(
        &self,
        image: &Reference,
        digest: &str,
        size: u64,
        max: usize,
    ) -> Result<Vec<u8>, ImageError> {
        if size > max as u64 {
            return Err(reg_err(format!("blob {digest} is larger than {max} bytes")));
        }
        let mut s = self.blob(image, digest, size).await?;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Whether the registry has a blob.
    pub async fn has_blob(&self, image: &Reference, digest: &str) -> Result<bool, ImageError> {
        let url = self.url(image, &format!("blobs/{digest}"));
        let r = self.send(image, true, |c| c.head(&url)).await?;
        Ok(r.status().is_success())
    }

    /// Uploads a blob (monolithic: POST for a session, PUT with the digest).
    pub async fn push_blob(
        &self,
        image: &Reference,
        digest: &str,
        body: impl Fn() -> reqwest::Body,
    ) -> Result<(), ImageError> {
        if self.has_blob(image, digest).await? {
            return Ok(());
        }
        let url = self.url(image, "blobs/uploads/");
        let r = self.send(image, true, |c| c.post(&url)).await?;
        if r.status() != StatusCode::ACCEPTED {
            return Err(Self::fail(r, "starting a blob upload").await);
        }
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| reg_err("blob upload without a Location"))?;
        let base = reqwest::Url::parse(&url).map_err(reg_err)?;
        let mut put = base
            .join(location)
            .map_err(|e| reg_err(format!("upload location: {e}")))?;
        put.query_pairs_mut().append_pair("digest", digest);
        let r = self
            .send(image, true, |c| {
                c.put(put.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body())
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(Self::fail(r, &format!("uploading blob {digest}")).await);
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or its digest.
    pub async fn push_manifest(
        &self,
        image: &Reference,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let url = self.url(image, &format!("manifests/{reference}"));
        let body = Bytes::copy_from_slice(bytes);
        let r = self
            .send(image, true, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if r.status() != StatusCode::CREATED {
            return Err(Self::fail(r, &format!("pushing manifest {reference}")).await);
        }
        Ok(())
    }
}

/// A blob being downloaded: chunks as they arrive; after the last one, an
/// error unless the digest and size are right.
pub struct BlobStream {
    response: Response,
    ctx: digest::Context,
    read: u64,
    digest: String,
    size: u64,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("read", &self.read)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The next chunk; `None` at the end, only when the blob checked out.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ImageError> {
        match self
            .response
            .chunk()
            .await
            .map_err(|e| reg_err(format!("blob {}: {e}", self.digest)))?
        {
            Some(chunk) => {
                self.read = self.read.saturating_add(chunk.len() as u64);
                if self.read > self.size {
                    return Err(reg_err(format!(
                        "blob {}: more than the {} bytes of its descriptor",
                        self.digest, self.size
                    )));
                }
                self.ctx.update(&chunk);
                Ok(Some(chunk))
            }
            None => {
                let actual = format!("sha256:{}", hex::encode(self.ctx.clone().finish().as_ref()));
                if actual != self.digest || self.read != self.size {
                    return Err(reg_err(format!(
                        "blob {} does not match its descriptor (got {actual}, {} of {} bytes)",
                        self.digest, self.read, self.size
                    )));
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull");
        let c = Challenge::parse(r#"Basic realm="a \"quoted\" realm", charset=UTF-8"#).unwrap();
        assert_eq!(c.params["realm"], "a \"quoted\" realm");
        assert_eq!(c.params["charset"], "UTF-8");
        for bad in [
            "",
            "Bearer realm=\"open",
            "Bearer =x",
            "Bear er realm=x",
            "Bearer a=\"x\" b=\"y\"",
        ] {
            assert!(Challenge::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_detail(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            "MANIFEST_UNKNOWN manifest unknown"
        );
        assert_eq!(error_detail(b"  plain  "), "plain");
    }

    proptest::proptest! {
        #[test]
        fn challenge_parser_never_panics(s in ".{0,200}") {
            let _ = Challenge::parse(&s);
        }
    }
}
