//! The Confidential Containers key-provider annotation packet: the layer's
//! private options wrapped under a key-encryption key (KEK) that a key
//! broker releases after attestation. `kid` names that broker resource
//! (`kbs:///default/key/1`); `wrapped_data` is AES-256-GCM(KEK, iv,
//! private options JSON) as ciphertext‖tag, no AAD (`A256GCM`, 12-byte
//! IV). `A256CTR` (16-byte IV, unauthenticated) is unwrapped for old
//! images but never produced.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_256, DecryptingKey, DecryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::layer::PrivateOptions;
use crate::{ImageError, b64, malformed};

/// The packet as it travels in the annotation (base64 of this JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationPacket {
    pub kid: String,
    pub wrapped_data: String,
    pub iv: String,
    pub wrap_type: String,
    /// v2 fields (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_settings: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Value>,
}

/// The broker resource path (`repo/type/tag`) named by a `kbs:///` key id.
/// Host and port, if any, are ignored (the guest's configured broker is
/// used), as CoCo does.
pub fn resource_path(kid: &str) -> Result<String, ImageError> {
    let rest = kid
        .strip_prefix("kbs://")
        .ok_or_else(|| malformed("key id", "not a kbs:// URI"))?;
    let path = match rest.split_once('/') {
        Some((_, p)) => p,
        None => return Err(malformed("key id", "no resource path")),
    };
    let segs: Vec<&str> = path.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if segs.len() != 3 || !segs.iter().all(|s| ok(s)) {
        return Err(malformed(
            "key id",
            "expected kbs:///<repository>/<type>/<tag>",
        ));
    }
    Ok(path.to_string())
}

impl AnnotationPacket {
    /// Wraps `private` under `kek` for the broker resource `kid`.
    pub fn wrap(kid: &str, kek: &[u8; 32], private: &PrivateOptions) -> Result<Self, ImageError> {
        resource_path(kid)?;
        let mut iv = [0u8; 12];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| ImageError::Crypto)?;
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).map_err(|_| ImageError::Crypto)?);
        let mut buf = private.to_json()?;
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
            .map_err(|_| ImageError::Crypto)?;
        Ok(AnnotationPacket {
            kid: kid.to_string(),
            wrapped_data: b64().encode(buf),
            iv: b64().encode(iv),
            wrap_type: "A256GCM".into(),
            version: None,
            provider: None,
            provider_settings: None,
            annotations: None,
        })
    }

    /// Parses the annotation value (base64 of the packet JSON).
    pub fn from_annotation(value: &str) -> Result<Self, ImageError> {
        let json = b64()
            .decode(value.trim())
            .map_err(|_| malformed("annotation packet", "not base64"))?;
        Self::from_json(&json)
    }

    /// Parses the packet JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, ImageError> {
        let p: AnnotationPacket =
            serde_json::from_slice(json).map_err(|e| malformed("annotation packet", e))?;
        if let Some(v) = &p.version
            && v != "0.1.0"
        {
            return Err(ImageError::Unsupported {
                what: "annotation packet version",
                value: v.clone(),
            });
        }
        if let Some(pr) = &p.provider
            && pr != "kbs"
        {
            return Err(ImageError::Unsupported {
                what: "key provider",
                value: pr.clone(),
            });
        }
        Ok(p)
    }

    /// The packet JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, ImageError> {
        serde_json::to_vec(self).map_err(|e| malformed("annotation packet", e))
    }

    /// The annotation value.
    pub fn to_annotation(&self) -> Result<String, ImageError> {
        Ok(b64().encode(self.to_json()?))
    }

    /// The broker resource holding the KEK.
    pub fn resource_path(&self) -> Result<String, ImageError> {
        resource_path(&self.kid)
    }

    /// Unwraps the private options with the KEK.
    pub fn unwrap(&self, kek: &[u8]) -> Result<PrivateOptions, ImageError> {
        let kek: &[u8; 32] = kek
            .try_into()
            .map_err(|_| malformed("key-encryption key", "must be 32 bytes"))?;
        let iv = b64()
            .decode(&self.iv)
            .map_err(|_| malformed("annotation packet", "iv is not base64"))?;
        let mut data = b64()
            .decode(&self.wrapped_data)
            .map_err(|_| malformed("annotation packet", "wrapped_data is not base64"))?;
        let plain = match self.wrap_type.as_str() {
            "A256GCM" => {
                let iv: [u8; 12] = iv
                    .try_into()
                    .map_err(|_| malformed("annotation packet", "A256GCM needs a 12-byte iv"))?;
                let key = LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, kek).map_err(|_| ImageError::Crypto)?,
                );
                key.open_in_place(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut data)
                    .map_err(|_| ImageError::Unwrap)?
                    .to_vec()
            }
            "A256CTR" => {
                let iv: [u8; 16] = iv
                    .try_into()
                    .map_err(|_| malformed("annotation packet", "A256CTR needs a 16-byte iv"))?;
                let key = DecryptingKey::ctr(
                    UnboundCipherKey::new(&AES_256, kek).map_err(|_| ImageError::Crypto)?,
                )
                .map_err(|_| ImageError::Crypto)?;
                key.decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| ImageError::Unwrap)?
                    .to_vec()
            }
            other => {
                return Err(ImageError::Unsupported {
                    what: "wrap type",
                    value: other.to_string(),
                });
            }
        };
        // Unauthenticated A256CTR output that is not the options JSON is a
        // wrong key, not malformed input.
        PrivateOptions::from_json(&plain).map_err(|_| ImageError::Unwrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ocicrypt-rs/data/sample_kbc_annotation.json` from
    /// confidential-containers/guest-components: a packet wrapped with the
    /// CoCo sample KBC's published test KEK. Interop vector.
    const SAMPLE_PACKET: &str = r#"{
	"kid": "kbs:///default/key/1",
	"wrapped_data": "KxAFgXwa0y72Xdygub9lF00RVMtSRbYzvakIEASgi3Gvt1wGLkhKPXf0S033Jdi6vAN6zBM7d0xZSDo2JCeew0FeKwTYgdJfdcPhuEpZOpjhwIsidyeiunzp0J/crvI1tSPZJw4DPHZN2eQtg71rDzIbuDM5ATheiDM9/YJv+k+n6Nv6/pRb8qynNzbWFz7Q8wEo1ZZlL6UftOBJ6j9GuEOTM2k/B+5sMA2VhGHSzDsKA1mn0qzcn2HJg4GcmxwDpJwzm5n7B4iIJ3A0umrQAjQ=",
	"iv": "3PQMqtjbR4hxCr83",
	"wrap_type": "A256GCM"
}"#;
    const SAMPLE_KEK: &str = "d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea";

    #[test]
    fn unwraps_the_coco_sample_packet() {
        let p = AnnotationPacket::from_json(SAMPLE_PACKET.as_bytes()).unwrap();
        assert_eq!(p.resource_path().unwrap(), "default/key/1");
        let opts = p.unwrap(&hex::decode(SAMPLE_KEK).unwrap()).unwrap();
        assert_eq!(opts.symkey, "1jL2jJV0Oyz2nmPkLtqulW6cKcpIUN5FpILcVnP5Uqs=");
        assert_eq!(
            opts.digest,
            "sha256:18be1897f9402f27c8c0eba7c86e0c00f5656db62961b5949d55f9565c42c6e7"
        );
        assert_eq!(opts.cipheroptions["nonce"], "r10F9oaCu+nWFXfod3l83g==");
        // Any other KEK, and any changed byte of the wrapped data, fails.
        assert_eq!(p.unwrap(&[0u8; 32]), Err(ImageError::Unwrap));
        let mut raw = b64().decode(&p.wrapped_data).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 0x80;
            let mut q = p.clone();
            q.wrapped_data = b64().encode(&raw);
            assert_eq!(
                q.unwrap(&hex::decode(SAMPLE_KEK).unwrap()),
                Err(ImageError::Unwrap),
                "byte {i}"
            );
            raw[i] ^= 0x80;
        }
    }

    #[test]
    fn wrap_then_unwrap() {
        let mut ct = Vec::new();
        let e = crate::layer::encrypt_to(&b"blob"[..], &mut ct).unwrap();
        let kek = [9u8; 32];
        let p = AnnotationPacket::wrap("kbs:///default/key/1", &kek, &e.private).unwrap();
        let again = AnnotationPacket::from_annotation(&p.to_annotation().unwrap()).unwrap();
        assert_eq!(again, p);
        assert_eq!(again.unwrap(&kek).unwrap(), e.private);
        assert!(again.unwrap(&[9u8; 31]).is_err());
    }

    #[test]
    fn strict_packets_and_key_ids() {
        for kid in [
            "kbs:///default/key/1",
            "kbs://broker.example:8080/default/key/1",
        ] {
            assert_eq!(resource_path(kid).unwrap(), "default/key/1");
        }
        for kid in [
            "",
            "https:///default/key/1",
            "kbs:///default/key",
            "kbs:///default/key/1/2",
            "kbs:///default/../1",
            "kbs:///default/key/",
            "kbs:///kbs:///default/key/1",
        ] {
            assert!(resource_path(kid).is_err(), "{kid}");
        }
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE_PACKET).unwrap();
        v["version"] = "0.2.0".into();
        assert!(matches!(
            AnnotationPacket::from_json(v.to_string().as_bytes()),
            Err(ImageError::Unsupported { .. })
        ));
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE_PACKET).unwrap();
        v["provider"] = "aliyun".into();
        assert!(AnnotationPacket::from_json(v.to_string().as_bytes()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE_PACKET).unwrap();
        v["surprise"] = 1.into();
        assert!(AnnotationPacket::from_json(v.to_string().as_bytes()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE_PACKET).unwrap();
        v["wrap_type"] = "A128KW".into();
        let p = AnnotationPacket::from_json(v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            p.unwrap(&[0; 32]),
            Err(ImageError::Unsupported { .. })
        ));
        // v2 fields are accepted.
        let mut v: serde_json::Value = serde_json::from_str(SAMPLE_PACKET).unwrap();
        v["version"] = "0.1.0".into();
        v["provider"] = "kbs".into();
        v["provider_settings"] = serde_json::json!({});
        v["annotations"] = serde_json::json!({});
        let p = AnnotationPacket::from_json(v.to_string().as_bytes()).unwrap();
        assert!(p.unwrap(&hex::decode(SAMPLE_KEK).unwrap()).is_ok());
    }
}
