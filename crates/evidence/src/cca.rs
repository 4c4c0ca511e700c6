//! Arm CCA attestation tokens (Arm RMM specification, "Attestation token"
//! and the CCA Security Model's platform claims): a CBOR collection (tag 399)
//! of a platform token (key 44234) and a realm token (key 44241), each a
//! COSE_Sign1. Claim keys and sizes follow the specification; unknown claim
//! keys are refused, as are wrong lengths.

use crate::ParseError;
use crate::cbor::{self, Value};
use crate::cose::CoseSign1;

/// The CBOR tag of a CCA token collection.
pub const TAG_CCA_TOKEN: u64 = 399;
/// Key of the platform token in the collection.
pub const KEY_PLATFORM: i64 = 44234;
/// Key of the realm token in the collection.
pub const KEY_REALM: i64 = 44241;

/// One platform software component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwComponent {
    pub measurement_type: Option<String>,
    pub measurement_value: Vec<u8>,
    pub version: Option<String>,
    pub signer_id: Vec<u8>,
    pub hash_algo: Option<String>,
}

/// The platform token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformClaims {
    pub profile: String,
    /// The hash of the realm attestation key (the binding).
    pub challenge: Vec<u8>,
    pub implementation_id: Vec<u8>,
    pub instance_id: Vec<u8>,
    pub config: Vec<u8>,
    pub lifecycle: u16,
    pub sw_components: Vec<SwComponent>,
    pub verification_service: Option<String>,
    pub hash_algo: String,
}

/// The realm token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmClaims {
    pub profile: Option<String>,
    /// 64 bytes: the relying party's freshness value.
    pub challenge: Vec<u8>,
    pub personalization_value: Vec<u8>,
    /// Realm initial measurement.
    pub rim: Vec<u8>,
    /// The four realm extensible measurements.
    pub rems: Vec<Vec<u8>>,
    pub hash_algo: String,
    /// The realm attestation key (an uncompressed P-384 point).
    pub rak: Vec<u8>,
    pub rak_hash_algo: String,
}

/// A parsed CCA token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcaToken {
    pub platform: CoseSign1,
    pub realm: CoseSign1,
    pub platform_claims: PlatformClaims,
    pub realm_claims: RealmClaims,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn sized(v: &Value<'_>, field: &'static str, sizes: &[usize]) -> Result<Vec<u8>, ParseError> {
    let b = v.bytes(field)?;
    if !sizes.contains(&b.len()) {
        return Err(invalid(
            field,
            format!("{} bytes, expected one of {sizes:?}", b.len()),
        ));
    }
    Ok(b.to_vec())
}

fn hash_algo(v: &Value<'_>, field: &'static str) -> Result<String, ParseError> {
    let t = v.text(field)?;
    match t {
        "sha-256" | "sha-384" | "sha-512" => Ok(t.to_string()),
        _ => Err(invalid(field, format!("unknown hash algorithm {t:?}"))),
    }
}

const DIGEST_SIZES: &[usize] = &[32, 48, 64];

fn platform_claims(v: &Value<'_>) -> Result<PlatformClaims, ParseError> {
    let (mut profile, mut challenge, mut impl_id, mut inst_id) = (None, None, None, None);
    let (mut config, mut lifecycle, mut sw, mut service, mut algo) = (None, None, None, None, None);
    for (k, val) in v.map("platform claims")? {
        match k.as_i64() {
            Some(265) => profile = Some(val.text("cca-platform-profile")?.to_string()),
            Some(10) => challenge = Some(sized(val, "cca-platform-challenge", DIGEST_SIZES)?),
            Some(2396) => impl_id = Some(sized(val, "cca-platform-implementation-id", &[32])?),
            Some(256) => {
                let id = sized(val, "cca-platform-instance-id", &[33])?;
                if id.first() != Some(&0x01) {
                    return Err(invalid(
                        "cca-platform-instance-id",
                        "the UEID type must be 0x01 (RAND)",
                    ));
                }
                inst_id = Some(id);
            }
            Some(2401) => config = Some(val.bytes("cca-platform-config")?.to_vec()),
            Some(2395) => {
                let l = val.uint("cca-platform-lifecycle")?;
                lifecycle = Some(u16::try_from(l).map_err(|_| {
                    invalid("cca-platform-lifecycle", format!("{l} is out of range"))
                })?);
            }
            Some(2399) => {
                let mut out = Vec::new();
                for c in val.array("cca-platform-sw-components")? {
                    out.push(sw_component(c)?);
                }
                if out.is_empty() {
                    return Err(invalid("cca-platform-sw-components", "empty"));
                }
                sw = Some(out);
            }
            Some(2400) => service = Some(val.text("cca-platform-service-indicator")?.to_string()),
            Some(2402) => algo = Some(hash_algo(val, "cca-platform-hash-algo-id")?),
            _ => {
                return Err(invalid(
                    "platform claims",
                    format!("unknown claim key {k:?}"),
                ));
            }
        }
    }
    let missing = |f: &'static str| invalid(f, "missing");
    Ok(PlatformClaims {
        profile: profile.ok_or_else(|| missing("cca-platform-profile"))?,
        challenge: challenge.ok_or_else(|| missing("cca-platform-challenge"))?,
        implementation_id: impl_id.ok_or_else(|| missing("cca-platform-implementation-id"))?,
        instance_id: inst_id.ok_or_else(|| missing("cca-platform-instance-id"))?,
        config: config.ok_or_else(|| missing("cca-platform-config"))?,
        lifecycle: lifecycle.ok_or_else(|| missing("cca-platform-lifecycle"))?,
        sw_components: sw.ok_or_else(|| missing("cca-platform-sw-components"))?,
        verification_service: service,
        hash_algo: algo.ok_or_else(|| missing("cca-platform-hash-algo-id"))?,
    })
}

fn sw_component(v: &Value<'_>) -> Result<SwComponent, ParseError> {
    let (mut mtype, mut value, mut version, mut signer, mut algo) = (None, None, None, None, None);
    for (k, val) in v.map("software component")? {
        match k.as_i64() {
            Some(1) => mtype = Some(val.text("measurement-type")?.to_string()),
            Some(2) => value = Some(sized(val, "measurement-value", DIGEST_SIZES)?),
            Some(4) => version = Some(val.text("version")?.to_string()),
            Some(5) => signer = Some(sized(val, "signer-id", DIGEST_SIZES)?),
            Some(6) => algo = Some(hash_algo(val, "hash-algo-id")?),
            _ => {
                return Err(invalid("software component", format!("unknown key {k:?}")));
            }
        }
    }
    Ok(SwComponent {
        measurement_type: mtype,
        measurement_value: value.ok_or_else(|| invalid("measurement-value", "missing"))?,
        version,
        signer_id: signer.ok_or_else(|| invalid("signer-id", "missing"))?,
        hash_algo: algo,
    })
}

fn realm_claims(v: &Value<'_>) -> Result<RealmClaims, ParseError> {
    let (mut profile, mut challenge, mut rpv, mut rim, mut rems) = (None, None, None, None, None);
    let (mut algo, mut rak, mut rak_algo) = (None, None, None);
    for (k, val) in v.map("realm claims")? {
        match k.as_i64() {
            Some(265) => profile = Some(val.text("cca-realm-profile")?.to_string()),
            Some(10) => challenge = Some(sized(val, "cca-realm-challenge", &[64])?),
            Some(44235) => rpv = Some(sized(val, "cca-realm-personalization-value", &[64])?),
            Some(44238) => rim = Some(sized(val, "cca-realm-initial-measurement", DIGEST_SIZES)?),
            Some(44239) => {
                let items = val.array("cca-realm-extensible-measurements")?;
                if items.len() != 4 {
                    return Err(invalid(
                        "cca-realm-extensible-measurements",
                        format!("{} entries, expected 4", items.len()),
                    ));
                }
                rems = Some(
                    items
                        .iter()
                        .map(|m| sized(m, "cca-realm-extensible-measurement", DIGEST_SIZES))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            Some(44236) => algo = Some(hash_algo(val, "cca-realm-hash-algo-id")?),
            Some(44237) => {
                let key = sized(val, "cca-realm-public-key", &[97])?;
                if key.first() != Some(&0x04) {
                    return Err(invalid(
                        "cca-realm-public-key",
                        "expected an uncompressed P-384 point",
                    ));
                }
                rak = Some(key);
            }
            Some(44240) => rak_algo = Some(hash_algo(val, "cca-realm-public-key-hash-algo-id")?),
            _ => return Err(invalid("realm claims", format!("unknown claim key {k:?}"))),
        }
    }
    let missing = |f: &'static str| invalid(f, "missing");
    Ok(RealmClaims {
        profile,
        challenge: challenge.ok_or_else(|| missing("cca-realm-challenge"))?,
        personalization_value: rpv.ok_or_else(|| missing("cca-realm-personalization-value"))?,
        rim: rim.ok_or_else(|| missing("cca-realm-initial-measurement"))?,
        rems: rems.ok_or_else(|| missing("cca-realm-extensible-measurements"))?,
        hash_algo: algo.ok_or_else(|| missing("cca-realm-hash-algo-id"))?,
        rak: rak.ok_or_else(|| missing("cca-realm-public-key"))?,
        rak_hash_algo: rak_algo.ok_or_else(|| missing("cca-realm-public-key-hash-algo-id"))?,
    })
}

impl CcaToken {
    /// Parses a CCA token (the tag-399 collection).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let v = cbor::decode(buf)?;
        let Value::Tag(TAG_CCA_TOKEN, inner) = v else {
            return Err(invalid("CCA token", "expected CBOR tag 399"));
        };
        let entries = inner.map("CCA token")?;
        if entries.len() != 2 {
            return Err(invalid(
                "CCA token",
                "expected exactly the platform and realm tokens",
            ));
        }
        let platform = inner
            .get_int(KEY_PLATFORM)
            .ok_or_else(|| invalid("CCA token", "no platform token (44234)"))?
            .bytes("platform token")?;
        let realm = inner
            .get_int(KEY_REALM)
            .ok_or_else(|| invalid("CCA token", "no realm token (44241)"))?
            .bytes("realm token")?;
        let platform = CoseSign1::parse(platform)?;
        let realm = CoseSign1::parse(realm)?;
        let platform_claims = platform_claims(&cbor::decode(&platform.payload)?)?;
        let realm_claims = realm_claims(&cbor::decode(&realm.payload)?)?;
        Ok(CcaToken {
            platform,
            realm,
            platform_claims,
            realm_claims,
        })
    }
}

/// The CoCo `cca` evidence: `{"token": [u8, ...]}` (a JSON number array,
/// as guest-components serialises it), or the token in base64.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CcaEvidence {
    token: TokenBytes,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
enum TokenBytes {
    Numbers(Vec<u8>),
    Base64(String),
}

/// Parses the CoCo JSON evidence and the token inside it.
pub fn parse_json(bytes: &[u8]) -> Result<CcaToken, ParseError> {
    use base64::Engine as _;
    let ev: CcaEvidence =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let token = match ev.token {
        TokenBytes::Numbers(b) => b,
        TokenBytes::Base64(s) => base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|e| invalid("token", format!("not base64: {e}")))?,
    };
    CcaToken::parse(&token)
}
