//! Secrets at rest: AES-256-GCM under a key-encryption key (KEK) that is kept
//! outside the database (a file or the `VEIL_KEK` environment variable; an
//! HSM later). Each record's AAD is its namespace and key, so a sealed value
//! moved to another path no longer opens.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

const VERSION: u8 = 1;

/// The key-encryption key.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

fn parse_hex_key(text: &str, origin: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("{origin}: not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("{origin}: must be 32 bytes (64 hex digits)"))
}

impl Kek {
    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, String> {
        let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| "invalid KEK".to_string())?;
        Ok(Kek(LessSafeKey::new(k)))
    }

    /// Like [`Kek::load`], but never creates a key (import, export tools).
    pub fn load_existing(file: Option<&Path>, data_dir: &Path) -> Result<Self, String> {
        if file.is_none()
            && std::env::var_os("VEIL_KEK").is_none()
            && !data_dir.join("kek.hex").exists()
        {
            return Err(format!(
                "no key-encryption key: set kek_file or VEIL_KEK (none at {})",
                data_dir.join("kek.hex").display()
            ));
        }
        Self::load(file, data_dir)
    }

    /// The KEK from `file`, else `VEIL_KEK`, else `data_dir/kek.hex`
    /// (created with mode 0600 on first start).
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Self, String> {
        if let Some(f) = file {
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("kek_file {}: {e}", f.display()))?;
            return Self::from_bytes(&parse_hex_key(&text, "kek_file")?);
        }
        if let Ok(v) = std::env::var("VEIL_KEK") {
            return Self::from_bytes(&parse_hex_key(&v, "VEIL_KEK")?);
        }
        let path = data_dir.join("kek.hex");
        if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Self::from_bytes(&parse_hex_key(&text, &path.display().to_string())?);
        }
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "no randomness".to_string())?;
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        write_private(&path, hex::encode(key).as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::warn!(path = %path.display(), "created a new key-encryption key next to the store; keep it elsewhere (kek_file or VEIL_KEK) in production");
        Self::from_bytes(&key)
    }

    /// Seals `plaintext` for the record `aad`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness".to_string())?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "seal failed".to_string())?;
        let mut out = vec![VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens a sealed record.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let (v, rest) = sealed.split_first().ok_or("empty record")?;
        if *v != VERSION {
            return Err(format!("unknown sealed-record version {v}"));
        }
        if rest.len() < 12 + 16 {
            return Err("truncated record".into());
        }
        let (nonce, ct) = rest.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "nonce")?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| {
                "record does not open with this KEK (wrong key, or tampered)".to_string()
            })?;
        Ok(plain.to_vec())
    }
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let k = Kek::from_bytes(&[7; 32]).unwrap();
        let s = k.seal("resources/a/b/c", b"secret").unwrap();
        assert_eq!(k.open("resources/a/b/c", &s).unwrap(), b"secret");
        assert!(k.open("resources/a/b/d", &s).is_err());
        let other = Kek::from_bytes(&[8; 32]).unwrap();
        assert!(other.open("resources/a/b/c", &s).is_err());
        assert!(!format!("{k:?}").contains('7'));
    }
}
