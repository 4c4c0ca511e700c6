//! The signature policy: containers-policy.json(5) as podman, skopeo and
//! CRI-O read it, for the `docker` transport (images from registries).
//!
//! ```json
//! {"default": [{"type": "reject"}],
//!  "transports": {"docker": {
//!     "registry.example/team": [{"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign/team",
//!                                "signedIdentity": {"type": "matchRepository"}}],
//!     "registry.example/base": [{"type": "insecureAcceptAnything"}]}}}
//! ```
//!
//! Requirements: `insecureAcceptAnything`, `reject`, `sigstoreSigned` with
//! `keyPath`/`keyPaths`/`keyData`/`keyDatas` (a key path may be a broker
//! resource, `kbs:///repo/type/tag`, fetched after attestation), and
//! `signedBy` (`keyType: GPGKeys`, GPG keyrings by `keyPath`/`keyPaths`/
//! `keyData`; signatures from a lookaside store). Every requirement of the
//! scope must accept; a signature requirement accepts when at least one
//! signature verifies with one of its keys, names the manifest and passes
//! the identity check. Fulcio and Rekor options are refused when the policy
//! is loaded, so that a policy that asks for them never silently accepts.
//!
//! Parsing is strict, as containers/image's: unknown fields and unknown
//! requirement types are errors.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::reference::Reference;
use crate::signature::{Candidate, PublicKey};
use crate::simple_signing::GpgKeyring;
use crate::{ImageError, b64, malformed};

/// A whole policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Vec<Requirement>,
    /// The `docker` transport's scopes.
    docker: BTreeMap<String, Vec<Requirement>>,
}

/// Where a verification key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PEM file.
    Path(String),
    /// A broker resource (`kbs:///repo/type/tag`), fetched through the agent.
    Kbs(String),
    /// PEM bytes inline (`keyData`, base64 in the file).
    Data(Vec<u8>),
}

/// How the signed identity must relate to the pulled reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    ExactReference(Reference),
    ExactRepository(Reference),
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

/// One requirement of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SigstoreSigned {
        keys: Vec<KeySource>,
        identity: SignedIdentity,
    },
    /// GPG simple signing (keys are GPG keyrings).
    SignedBy {
        keys: Vec<KeySource>,
        identity: SignedIdentity,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Vec<RawRequirement>,
    #[serde(default)]
    transports: BTreeMap<String, BTreeMap<String, Vec<RawRequirement>>>,
}

// Only the parsed file's shape; dropped right after conversion.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawRequirement {
    // Empty struct variants, so that unknown fields are refused (serde
    // ignores them on unit variants of an internally tagged enum).
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    #[serde(rename = "reject")]
    Reject {},
    #[serde(rename = "signedBy", rename_all = "camelCase")]
    SignedBy {
        key_type: String,
        key_path: Option<String>,
        key_paths: Option<Vec<String>>,
        key_data: Option<String>,
        signed_identity: Option<RawIdentity>,
    },
    #[serde(rename = "sigstoreSigned", rename_all = "camelCase")]
    SigstoreSigned {
        key_path: Option<String>,
        key_paths: Option<Vec<String>>,
        key_data: Option<String>,
        key_datas: Option<Vec<String>>,
        fulcio: Option<serde_json::Value>,
        rekor_public_key_path: Option<String>,
        rekor_public_key_paths: Option<Vec<String>>,
        rekor_public_key_data: Option<String>,
        rekor_public_key_datas: Option<Vec<String>>,
        pki: Option<serde_json::Value>,
        signed_identity: Option<RawIdentity>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawIdentity {
    #[serde(rename = "matchExact")]
    MatchExact {},
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    #[serde(rename = "exactReference", rename_all = "camelCase")]
    ExactReference { docker_reference: String },
    #[serde(rename = "exactRepository", rename_all = "camelCase")]
    ExactRepository { docker_repository: String },
    #[serde(rename = "remapIdentity", rename_all = "camelCase")]
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

fn bad(detail: impl std::fmt::Display) -> ImageError {
    malformed("signature policy", detail)
}

fn identity(raw: Option<RawIdentity>) -> Result<SignedIdentity, ImageError> {
    Ok(match raw {
        None | Some(RawIdentity::MatchRepoDigestOrExact {}) => {
            SignedIdentity::MatchRepoDigestOrExact
        }
        Some(RawIdentity::MatchExact {}) => SignedIdentity::MatchExact,
        Some(RawIdentity::MatchRepository {}) => SignedIdentity::MatchRepository,
        Some(RawIdentity::ExactReference { docker_reference }) => {
            let r = Reference::parse(&docker_reference)?;
            if r.is_name_only() {
                return Err(bad(format!(
                    "exactReference {docker_reference:?} needs a tag or digest"
                )));
            }
            SignedIdentity::ExactReference(r)
        }
        Some(RawIdentity::ExactRepository { docker_repository }) => {
            let r = Reference::parse(&docker_repository)?;
            if !r.is_name_only() {
                return Err(bad(format!(
                    "exactRepository {docker_repository:?} must be a repository without tag or digest"
                )));
            }
            SignedIdentity::ExactRepository(r)
        }
        Some(RawIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        }) => {
            for p in [&prefix, &signed_prefix] {
                valid_scope(p)?;
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            }
        }
    })
}

fn requirement(raw: RawRequirement) -> Result<Requirement, ImageError> {
    Ok(match raw {
        RawRequirement::InsecureAcceptAnything {} => Requirement::InsecureAcceptAnything,
        RawRequirement::Reject {} => Requirement::Reject,
        RawRequirement::SignedBy {
            key_type,
            key_path,
            key_paths,
            key_data,
            signed_identity,
        } => {
            if key_type != "GPGKeys" {
                return Err(ImageError::Unsupported {
                    what: "signedBy keyType",
                    value: key_type,
                });
            }
            Requirement::SignedBy {
                keys: key_sources("signedBy", key_path, key_paths, key_data, None, |b| {
                    GpgKeyring::parse(b).map(|_| ())
                })?,
                identity: identity(signed_identity)?,
            }
        }
        RawRequirement::SigstoreSigned {
            key_path,
            key_paths,
            key_data,
            key_datas,
            fulcio,
            rekor_public_key_path,
            rekor_public_key_paths,
            rekor_public_key_data,
            rekor_public_key_datas,
            pki,
            signed_identity,
        } => {
            if fulcio.is_some() || pki.is_some() {
                return Err(ImageError::Unsupported {
                    what: "sigstoreSigned trust root",
                    value: "fulcio/pki (keyless); give keyPath or keyData".into(),
                });
            }
            if rekor_public_key_path.is_some()
                || rekor_public_key_paths.is_some()
                || rekor_public_key_data.is_some()
                || rekor_public_key_datas.is_some()
            {
                return Err(ImageError::Unsupported {
                    what: "sigstoreSigned option",
                    value: "rekorPublicKey* (transparency-log proofs)".into(),
                });
            }
            let sources = key_sources(
                "sigstoreSigned",
                key_path,
                key_paths,
                key_data,
                key_datas,
                |pem| PublicKey::from_pem(pem).map(|_| ()),
            )?;
            Requirement::SigstoreSigned {
                keys: sources,
                identity: identity(signed_identity)?,
            }
        }
    })
}

/// The keys of a requirement: exactly one of `keyPath`, `keyPaths`,
/// `keyData` (base64) and `keyDatas`; paths starting `kbs://` are broker
/// resources; inline keys are checked with `check` when the policy loads.
fn key_sources(
    what: &str,
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
    key_data: Option<String>,
    key_datas: Option<Vec<String>>,
    check: impl Fn(&[u8]) -> Result<(), ImageError>,
) -> Result<Vec<KeySource>, ImageError> {
    let mut paths = Vec::new();
    let mut given = 0u8;
    if let Some(p) = key_path {
        given = given.saturating_add(1);
        paths.push(p);
    }
    if let Some(ps) = key_paths {
        given = given.saturating_add(1);
        if ps.is_empty() {
            return Err(bad("keyPaths is empty"));
        }
        paths.extend(ps);
    }
    let mut sources: Vec<KeySource> = paths
        .into_iter()
        .map(|p| match p.strip_prefix("kbs://") {
            Some(_) => KeySource::Kbs(p),
            None => KeySource::Path(p),
        })
        .collect();
    let mut datas = Vec::new();
    if let Some(d) = key_data {
        given = given.saturating_add(1);
        datas.push(d);
    }
    if let Some(ds) = key_datas {
        given = given.saturating_add(1);
        if ds.is_empty() {
            return Err(bad("keyDatas is empty"));
        }
        datas.extend(ds);
    }
    for d in datas {
        let key = b64()
            .decode(d.trim())
            .map_err(|_| bad("keyData is not base64"))?;
        // Checked now, so a broken inline key fails at load.
        check(&key)?;
        sources.push(KeySource::Data(key));
    }
    if given != 1 {
        return Err(bad(format!(
            "{what} needs exactly one of keyPath, keyPaths, keyData{}",
            if what == "sigstoreSigned" {
                ", keyDatas"
            } else {
                ""
            }
        )));
    }
    Ok(sources)
}

fn requirements(raw: Vec<RawRequirement>, scope: &str) -> Result<Vec<Requirement>, ImageError> {
    if raw.is_empty() {
        return Err(bad(format!(
            "scope {scope:?} has no requirements (an empty list would accept anything)"
        )));
    }
    raw.into_iter().map(requirement).collect()
}

/// A docker scope: a reference, a repository or namespace, a host, or
/// `*.domain`.
fn valid_scope(s: &str) -> Result<(), ImageError> {
    if let Some(domain) = s.strip_prefix("*.") {
        if domain.is_empty() || domain.contains('/') || domain.contains('*') {
            return Err(bad(format!("invalid wildcard scope {s:?}")));
        }
        return Ok(());
    }
    // Written fully qualified, as containers/image requires: a host
    // (`h.io`, `h.io:5000`), a repository or namespace, or a reference.
    let ok = if s.contains('/') {
        Reference::parse(s).is_ok_and(|r| r.to_string() == s)
    } else {
        Reference::parse(&format!("{s}/x")).is_ok_and(|r| r.domain() == s)
    };
    if !ok {
        return Err(bad(format!(
            "scope {s:?} is not a fully qualified registry, repository or reference"
        )));
    }
    Ok(())
}

impl Policy {
    /// Parses a containers-policy.json document.
    pub fn parse(json: &[u8]) -> Result<Self, ImageError> {
        let raw: RawPolicy = serde_json::from_slice(json).map_err(bad)?;
        let default = requirements(raw.default, "default")?;
        let mut docker = BTreeMap::new();
        for (transport, scopes) in raw.transports {
            for (scope, reqs) in scopes {
                let reqs = requirements(reqs, &scope)?;
                if transport == "docker" {
                    if !scope.is_empty() {
                        valid_scope(&scope)?;
                    }
                    docker.insert(scope, reqs);
                }
            }
        }
        Ok(Policy { default, docker })
    }

    /// A policy that refuses everything (what a missing policy means).
    pub fn reject_all() -> Self {
        Policy {
            default: vec![Requirement::Reject],
            docker: BTreeMap::new(),
        }
    }

    /// The requirements that apply to `image`: the most specific docker
    /// scope (the reference, the repository, each enclosing namespace, the
    /// host, `*.` wildcards of the host), then the transport's `""` scope,
    /// then `default`.
    pub fn requirements_for(&self, image: &Reference) -> &[Requirement] {
        for scope in scopes_of(image) {
            if let Some(r) = self.docker.get(&scope) {
                return r;
            }
        }
        self.docker.get("").unwrap_or(&self.default)
    }

    /// The key sources of the requirements that apply to `image`, so the
    /// caller can fetch them (broker resources after attestation).
    pub fn keys_for(&self, image: &Reference) -> Vec<&KeySource> {
        self.requirements_for(image)
            .iter()
            .flat_map(|r| match r {
                Requirement::SigstoreSigned { keys, .. } | Requirement::SignedBy { keys, .. } => {
                    keys.iter().collect()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    /// Whether any requirement for `image` looks at signatures (so that
    /// they need to be fetched).
    pub fn needs_signatures(&self, image: &Reference) -> bool {
        self.requirements_for(image)
            .iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }))
    }

    /// Whether deciding on `image` needs GPG simple-signing signatures
    /// (from a lookaside store).
    pub fn needs_simple_signatures(&self, image: &Reference) -> bool {
        self.requirements_for(image)
            .iter()
            .any(|r| matches!(r, Requirement::SignedBy { .. }))
    }

    /// Decides on `image` (the reference as pulled) whose manifest digest
    /// is `manifest_digest`, given the signatures found and a loader for
    /// the keys given by path or broker resource (inline keys need none).
    /// Ok holds a line per requirement saying why it accepted.
    pub fn evaluate(
        &self,
        image: &Reference,
        manifest_digest: &str,
        signatures: &[Candidate],
        simple_signatures: &[Vec<u8>],
        load_key: &mut dyn FnMut(&KeySource) -> Result<Vec<u8>, ImageError>,
    ) -> Result<Vec<String>, ImageError> {
        let mut why = Vec::new();
        for req in self.requirements_for(image) {
            match req {
                Requirement::InsecureAcceptAnything => {
                    why.push("insecureAcceptAnything".to_string());
                }
                Requirement::Reject => {
                    return Err(ImageError::Policy(format!(
                        "{image}: the policy rejects this image"
                    )));
                }
                Requirement::SigstoreSigned { keys, identity } => {
                    let keys = keys
                        .iter()
                        .map(|k| match k {
                            KeySource::Data(pem) => PublicKey::from_pem(pem),
                            other => PublicKey::from_pem(&load_key(other)?),
                        })
                        .collect::<Result<Vec<_>, ImageError>>()?;
                    why.push(sigstore_signed(
                        image,
                        manifest_digest,
                        signatures,
                        &keys,
                        identity,
                    )?);
                }
                Requirement::SignedBy { keys, identity } => {
                    let mut keyring: Option<GpgKeyring> = None;
                    for k in keys {
                        let parsed = match k {
                            KeySource::Data(b) => GpgKeyring::parse(b)?,
                            other => GpgKeyring::parse(&load_key(other)?)?,
                        };
                        match &mut keyring {
                            Some(r) => r.extend(parsed),
                            None => keyring = Some(parsed),
                        }
                    }
                    let keyring = keyring.ok_or_else(|| bad("signedBy has no keys"))?;
                    why.push(signed_by(
                        image,
                        manifest_digest,
                        simple_signatures,
                        &keyring,
                        identity,
                    )?);
                }
            }
        }
        Ok(why)
    }
}

/// One sigstoreSigned requirement: accepted by the first signature that
/// verifies, names the manifest and passes the identity check.
fn sigstore_signed(
    image: &Reference,
    manifest_digest: &str,
    signatures: &[Candidate],
    keys: &[PublicKey],
    identity: &SignedIdentity,
) -> Result<String, ImageError> {
    if signatures.is_empty() {
        return Err(ImageError::Policy(format!(
            "{image}: a signature is required and none was found"
        )));
    }
    let mut reasons = Vec::new();
    for (i, c) in signatures.iter().enumerate() {
        let mut verified = None;
        for k in keys {
            match c.verify(k, manifest_digest) {
                Ok(p) => {
                    verified = Some(p);
                    break;
                }
                Err(e) => reasons.push(format!("signature {i}: {e}")),
            }
        }
        if let Some(p) = verified {
            if identity_matches(identity, image, &p.identity) {
                return Ok(format!("sigstoreSigned by signature {i} ({})", p.identity));
            }
            reasons.push(format!(
                "signature {i}: signed identity {} does not match {image} ({identity:?})",
                p.identity
            ));
        }
    }
    Err(ImageError::Policy(format!(
        "{image}: no signature accepted: {}",
        reasons.join("; ")
    )))
}

/// One signedBy requirement: accepted by the first simple-signing
/// signature that verifies with the keyring, names the manifest and passes
/// the identity check.
fn signed_by(
    image: &Reference,
    manifest_digest: &str,
    signatures: &[Vec<u8>],
    keyring: &GpgKeyring,
    identity: &SignedIdentity,
) -> Result<String, ImageError> {
    if signatures.is_empty() {
        return Err(ImageError::Policy(format!(
            "{image}: a GPG signature is required and none was found (lookaside store)"
        )));
    }
    let mut reasons = Vec::new();
    for (n, sig) in (1u32..).zip(signatures) {
        match crate::simple_signing::verify(sig, keyring, manifest_digest) {
            Ok(p) if identity_matches(identity, image, &p.identity) => {
                return Ok(format!("signedBy (GPG) signature {n} ({})", p.identity));
            }
            Ok(p) => reasons.push(format!(
                "signature {n}: signed identity {} does not match {image} ({identity:?})",
                p.identity
            )),
            Err(e) => reasons.push(format!("signature {n}: {e}")),
        }
    }
    Err(ImageError::Policy(format!(
        "{image}: no GPG signature accepted: {}",
        reasons.join("; ")
    )))
}

fn exact(a: &Reference, b: &Reference) -> bool {
    !a.is_name_only() && !b.is_name_only() && a.to_string() == b.to_string()
}

fn repo_digest_or_exact(intended: &Reference, signed: &Reference) -> bool {
    if intended.digest().is_some() {
        intended.repository() == signed.repository()
    } else {
        exact(intended, signed)
    }
}

/// Whether `s` starts with `prefix` at a component boundary.
fn strip_scope_prefix<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(prefix)?;
    let host_only = !prefix.contains('/');
    let boundary = rest.is_empty()
        || rest.starts_with('/')
        || (!host_only && (rest.starts_with(':') || rest.starts_with('@')));
    boundary.then_some(rest)
}

/// containers/image's identity rules.
pub fn identity_matches(rule: &SignedIdentity, intended: &Reference, signed: &Reference) -> bool {
    match rule {
        SignedIdentity::MatchExact => exact(intended, signed),
        SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(intended, signed),
        SignedIdentity::MatchRepository => intended.repository() == signed.repository(),
        SignedIdentity::ExactReference(r) => exact(r, signed),
        SignedIdentity::ExactRepository(r) => r.repository() == signed.repository(),
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let s = intended.to_string();
            let remapped = match strip_scope_prefix(&s, prefix) {
                Some(rest) => match Reference::parse(&format!("{signed_prefix}{rest}")) {
                    Ok(r) => r,
                    Err(_) => return false,
                },
                None => intended.clone(),
            };
            repo_digest_or_exact(&remapped, signed)
        }
    }
}

/// The scopes that may apply to `image`, most specific first.
fn scopes_of(image: &Reference) -> Vec<String> {
    let mut out = Vec::new();
    if !image.is_name_only() {
        out.push(image.to_string());
    }
    let mut repo = image.repository();
    out.push(repo.clone());
    while let Some(i) = repo.rfind('/') {
        repo.truncate(i);
        out.push(repo.clone());
    }
    // Wildcards from the host without its port.
    let host = image.domain().split(':').next().unwrap_or_default();
    let mut h = host;
    while let Some((_, parent)) = h.split_once('.') {
        out.push(format!("*.{parent}"));
        h = parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{Payload, SigningKey};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn signer() -> (SigningKey, Vec<u8>) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem =
            der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, der.as_ref()).unwrap();
        let k = SigningKey::from_pem(pem.as_bytes()).unwrap();
        let public = k.public_key_pem().unwrap().into_bytes();
        (k, public)
    }

    fn signed(k: &SigningKey, identity: &str) -> Candidate {
        let payload = Payload::encode(&r(identity), D).unwrap();
        Candidate {
            signature_b64: b64().encode(k.sign(&payload).unwrap()),
            payload,
        }
    }

    fn policy_with(public: &[u8], identity: &str) -> Policy {
        let json = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{
                "registry.example/team":[{{"type":"sigstoreSigned","keyData":"{}","signedIdentity":{identity}}}],
                "registry.example/base":[{{"type":"insecureAcceptAnything"}}],
                "kbs.example":[{{"type":"sigstoreSigned","keyPath":"kbs:///default/cosign/pub"}}]}}}}}}"#,
            b64().encode(public)
        );
        Policy::parse(json.as_bytes()).unwrap()
    }

    fn never(_: &KeySource) -> Result<Vec<u8>, ImageError> {
        Err(ImageError::Io("no key loader".into()))
    }

    #[test]
    fn scopes_and_decisions() {
        let (k, public) = signer();
        let p = policy_with(&public, r#"{"type":"matchRepoDigestOrExact"}"#);
        let app = r("registry.example/team/app:1");
        // Default: reject.
        let e = p
            .evaluate(&r("other.example/x:1"), D, &[], &[], &mut never)
            .unwrap_err();
        assert!(matches!(e, ImageError::Policy(_)));
        // insecureAcceptAnything for its namespace.
        assert!(
            p.evaluate(&r("registry.example/base/os:1"), D, &[], &[], &mut never)
                .is_ok()
        );
        // Unsigned refused; signed with the exact identity accepted.
        assert!(p.evaluate(&app, D, &[], &[], &mut never).is_err());
        let good = signed(&k, "registry.example/team/app:1");
        let why = p
            .evaluate(&app, D, std::slice::from_ref(&good), &[], &mut never)
            .unwrap();
        assert!(why[0].starts_with("sigstoreSigned"), "{why:?}");
        // Wrong identity (another tag, another repo) refused.
        for other in [
            "registry.example/team/app:2",
            "registry.example/team/evil:1",
        ] {
            let e = p
                .evaluate(&app, D, &[signed(&k, other)], &[], &mut never)
                .unwrap_err();
            assert!(e.to_string().contains("does not match"), "{e}");
        }
        // A signature by another key is refused even among good ones... but
        // one good signature suffices.
        let (stranger, _) = signer();
        let bad = signed(&stranger, "registry.example/team/app:1");
        assert!(
            p.evaluate(&app, D, std::slice::from_ref(&bad), &[], &mut never)
                .is_err()
        );
        assert!(
            p.evaluate(&app, D, &[bad, good.clone()], &[], &mut never)
                .is_ok()
        );
        // Pulled by digest: the repository is enough under the default rule.
        let by_digest = r(&format!("registry.example/team/app@{D}"));
        assert!(p.evaluate(&by_digest, D, &[good], &[], &mut never).is_ok());
        // Keys from the broker go through the loader.
        let kbs = r("kbs.example/a:1");
        assert_eq!(
            p.keys_for(&kbs),
            vec![&KeySource::Kbs("kbs:///default/cosign/pub".into())]
        );
        let mut loader = |s: &KeySource| match s {
            KeySource::Kbs(_) => Ok(public.clone()),
            _ => Err(ImageError::Io("unexpected".into())),
        };
        assert!(
            p.evaluate(&kbs, D, &[signed(&k, "kbs.example/a:1")], &[], &mut loader)
                .is_ok()
        );
        assert!(
            p.evaluate(&kbs, D, &[signed(&k, "kbs.example/a:1")], &[], &mut never)
                .is_err()
        );
    }

    #[test]
    fn identity_rules() {
        use SignedIdentity::*;
        let tag = r("h.io/a/b:1");
        let dig = r(&format!("h.io/a/b@{D}"));
        assert!(identity_matches(&MatchExact, &tag, &r("h.io/a/b:1")));
        assert!(!identity_matches(&MatchExact, &tag, &r("h.io/a/b")));
        assert!(!identity_matches(&MatchExact, &dig, &r("h.io/a/b:1")));
        assert!(identity_matches(
            &MatchRepoDigestOrExact,
            &dig,
            &r("h.io/a/b:7")
        ));
        assert!(!identity_matches(
            &MatchRepoDigestOrExact,
            &tag,
            &r("h.io/a/b")
        ));
        assert!(identity_matches(&MatchRepository, &tag, &r("h.io/a/b")));
        assert!(!identity_matches(&MatchRepository, &tag, &r("h.io/a/c:1")));
        assert!(identity_matches(
            &ExactReference(r("x.io/y:2")),
            &tag,
            &r("x.io/y:2")
        ));
        assert!(!identity_matches(
            &ExactReference(r("x.io/y:2")),
            &tag,
            &r("x.io/y:3")
        ));
        assert!(identity_matches(
            &ExactRepository(r("x.io/y")),
            &tag,
            &r("x.io/y:3")
        ));
        let remap = RemapIdentity {
            prefix: "mirror.io/m".into(),
            signed_prefix: "h.io/a".into(),
        };
        assert!(identity_matches(
            &remap,
            &r("mirror.io/m/b:1"),
            &r("h.io/a/b:1")
        ));
        assert!(!identity_matches(
            &remap,
            &r("mirror.io/mb:1"),
            &r("h.io/ab:1")
        ));
        assert!(!identity_matches(
            &remap,
            &r("mirror.io/m/b:1"),
            &r("h.io/a/b:2")
        ));
    }

    #[test]
    fn scope_order() {
        let s = scopes_of(&r("a.b.example:5000/ns/sub/app:1"));
        assert_eq!(
            s,
            [
                "a.b.example:5000/ns/sub/app:1",
                "a.b.example:5000/ns/sub/app",
                "a.b.example:5000/ns/sub",
                "a.b.example:5000/ns",
                "a.b.example:5000",
                "*.b.example",
                "*.example",
            ]
        );
        // The most specific scope wins.
        let p = Policy::parse(
            br#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{
                "a.b.example:5000/ns":[{"type":"reject"}],
                "a.b.example:5000/ns/sub/app":[{"type":"insecureAcceptAnything"}],
                "*.example":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        assert_eq!(
            p.requirements_for(&r("a.b.example:5000/ns/sub/app:1")),
            [Requirement::InsecureAcceptAnything]
        );
        assert_eq!(
            p.requirements_for(&r("a.b.example:5000/ns/other:1")),
            [Requirement::Reject]
        );
        assert_eq!(p.requirements_for(&r("c.example/x")), [Requirement::Reject]);
        assert_eq!(
            p.requirements_for(&r("quay.io/x")),
            [Requirement::InsecureAcceptAnything]
        );
    }

    #[test]
    fn strict_parsing() {
        for bad in [
            r#"{}"#,
            r#"{"default":[]}"#,
            r#"{"default":[{"type":"accept"}]}"#,
            r#"{"default":[{"type":"reject","x":1}]}"#,
            r#"{"default":[{"type":"reject"}],"extra":1}"#,
            r#"{"default":[{"type":"signedBy","keyType":"X509Certificates","keyPath":"/k"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"AAAA"}]}"#,
            r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyDatas":["AA"]}]}"#,
            r#"{"default":[{"type":"sigstoreSigned"}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","keyPaths":["/b"]}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","rekorPublicKeyPath":"/r"}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","fulcio":{}}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyData":"!!"}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"h.io/a"}}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"exactRepository","dockerRepository":"h.io/a:1"}}]}"#,
            r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"nope"}}]}"#,
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"h.io/a":[]}}}"#,
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"Bad Scope":[{"type":"reject"}]}}}"#,
        ] {
            assert!(Policy::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(Policy::parse(br#"{"default":[{"type":"reject"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}"#).is_ok());
    }

    proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Policy::parse(&bytes);
        }
    }
}
