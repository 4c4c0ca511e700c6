//! Container image references (`registry.example:5000/team/app:1.2@sha256:…`)
//! as the distribution project's `reference` package and containers/image
//! read them: the same grammar, the same normalisation (`busybox` is
//! `docker.io/library/busybox`), so that a policy scope or a signed identity
//! means here what it means to podman and skopeo.
//!
//! Why hand-written: the grammar is small and the crates that parse it
//! (oci-spec, oci-distribution) bring whole registry clients with them.

use std::fmt;

use crate::{ImageError, malformed};

/// The registry that references without one name.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's API is actually served.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn bad(s: &str, why: impl fmt::Display) -> ImageError {
    malformed("image reference", format!("{s:?}: {why}"))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0usize;
    while let Some(&x) = b.get(i) {
        if alnum(x) {
            i = i.saturating_add(1);
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while b.get(i).is_some_and(|&y| !alnum(y)) {
            i = i.saturating_add(1);
        }
        let sep = c.get(start..i).unwrap_or_default();
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|y| y == b'-')) {
            return false;
        }
    }
    true
}

/// A domain: DNS labels (letters of either case, digits, inner hyphens)
/// joined by dots, or a bracketed IPv6 address, with an optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err())
    {
        return false;
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                        && b.first().is_some_and(u8::is_ascii_alphanumeric)
                        && b.last().is_some_and(u8::is_ascii_alphanumeric)
                })
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && b.first()
            .is_some_and(|x| x.is_ascii_alphanumeric() || *x == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `sha256:<64 lowercase hex>`, the only digest algorithm accepted.
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl Reference {
    /// Parses and normalises a reference: `name[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        if s.is_empty() {
            return Err(bad(s, "empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(bad(s, "the digest is not sha256:<64 lowercase hex>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':'
        // before it is the registry's port).
        let last_slash = rest.rfind('/').map_or(0, |i| i.saturating_add(1));
        let (name, tag) = match rest.get(last_slash..).and_then(|t| t.find(':')) {
            Some(i) => {
                let at = last_slash.saturating_add(i);
                let tag = rest.get(at.saturating_add(1)..).unwrap_or_default();
                if !valid_tag(tag) {
                    return Err(bad(s, format!("invalid tag {tag:?}")));
                }
                (rest.get(..at).unwrap_or_default(), Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            Some((first, _)) if first.bytes().any(|b| b.is_ascii_uppercase()) => (
                first.to_string(),
                name.get(first.len().saturating_add(1)..)
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(bad(s, format!("invalid registry {domain:?}")));
        }
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(bad(
                s,
                "the repository must be lowercase [a-z0-9] components joined by '/', with '.', '_', '__' or '-' inside",
            ));
        }
        if domain.len().saturating_add(1).saturating_add(path.len()) > MAX_NAME {
            return Err(bad(s, "the name is longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry, as written in references (`docker.io`, `host:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Where the registry API is served (`registry-1.docker.io` for Docker
    /// Hub).
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.domain
        }
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The tag or digest to ask the registry for: the digest when there is
    /// one, else the tag, else `latest`.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// A name-only reference gets the `latest` tag (what a pull means).
    pub fn with_default_tag(mut self) -> Self {
        if self.is_name_only() {
            self.tag = Some("latest".into());
        }
        self
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ImageError> {
        if !valid_tag(tag) {
            return Err(bad(tag, "invalid tag"));
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest` (the tag dropped, as
    /// containers/image does for the canonical form).
    pub fn with_digest(&self, digest: &str) -> Result<Self, ImageError> {
        if !valid_digest(digest) {
            return Err(bad(digest, "invalid digest"));
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, ImageError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert!(r.is_name_only());
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(
            Reference::parse("user/app:1").unwrap().to_string(),
            "docker.io/user/app:1"
        );
        assert_eq!(
            Reference::parse("index.docker.io/busybox:1")
                .unwrap()
                .to_string(),
            "docker.io/library/busybox:1"
        );
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:v1.2@{D}")).unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.repository(), "127.0.0.1:5000/team/app");
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.repository(), "localhost/app");
        assert_eq!(r.manifest_reference(), "latest");
        let r = Reference::parse("[::1]:5000/app:x").unwrap();
        assert_eq!(r.domain(), "[::1]:5000");
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for s in [
            "",
            "app/UPPER",
            "app:",
            "app@sha256:00",
            "app@sha512:00",
            "a//b",
            "-app",
            "app-",
            "a..b",
            "a___b",
            "host:99999/app",
            "host:/app",
            "app:-tag",
            &format!("app:{}", "t".repeat(129)),
            &format!("h.io/{}", "a".repeat(260)),
            "[zz]:1/app",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
        assert!(Reference::parse("a__b/c-d/e---f.g_h").is_ok());
    }

    proptest! {
        #[test]
        fn display_round_trips(s in "[a-z0-9.:/_@-]{0,60}") {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
            }
        }
    }
}
