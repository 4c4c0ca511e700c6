//! Offline endorsement bundles.
//!
//! A bundle is a JSON file that carries everything needed to verify evidence
//! without the network: AMD certificates (VCEKs by chip id and TCB, ASK/ASVK,
//! ARK) and CRLs, each with where it came from. `veil endorsements fetch`
//! writes one; `veil verify --offline --bundle FILE` reads it.
//!
//! A bundle is not itself signed: every certificate in it is checked against
//! the pinned vendor roots at verification time, and a CRL against its
//! issuer, so a tampered bundle can only cause a rejection, never an
//! acceptance. (Its freshness, e.g. how old a CRL is, is reported.)
//!
//! ```json
//! {"format":"veil-endorsements","version":1,"created":"2026-11-30T00:00:00Z",
//!  "snp":[{"kind":"vcek","product":"Milan","hwid":"c384..","tcb":"bl=3 tee=0 snp=8 ucode=115",
//!          "source":"https://kdsintf.amd.com/vcek/v1/Milan/c384..?blSPL=3&..","der":"<base64>"}]}
//! ```

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use veil_evidence::snp::Product;

use crate::EndorsementError;
use crate::snp::SnpEndorsements;

/// The `format` value of a bundle.
pub const FORMAT: &str = "veil-endorsements";
/// The bundle version this code reads and writes.
pub const VERSION: u32 = 1;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Ark,
    Ask,
    Asvk,
    Vcek,
    Vlek,
    Crl,
}

/// One certificate or CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: EntryKind,
    pub product: String,
    /// Chip id (hex) for a VCEK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hwid: Option<String>,
    /// The TCB a VCEK was issued for, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb: Option<String>,
    /// Where it came from (a URL or a file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The DER, base64.
    pub der: String,
}

/// An offline bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub version: u32,
    pub created: String,
    #[serde(default)]
    pub snp: Vec<Entry>,
}

impl Bundle {
    /// An empty bundle stamped with the current time.
    pub fn new() -> Self {
        let created = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Bundle {
            format: FORMAT.into(),
            version: VERSION,
            created,
            snp: Vec::new(),
        }
    }

    /// Adds an entry unless the same DER is already present.
    pub fn push(&mut self, mut entry: Entry, der: &[u8]) {
        entry.der = STANDARD.encode(der);
        if !self.snp.iter().any(|e| e.der == entry.der) {
            self.snp.push(entry);
        }
    }

    /// Parses a bundle, refusing other formats and versions.
    pub fn parse(bytes: &[u8]) -> Result<Self, EndorsementError> {
        let b: Bundle =
            serde_json::from_slice(bytes).map_err(|e| EndorsementError::Bundle(e.to_string()))?;
        if b.format != FORMAT {
            return Err(EndorsementError::Bundle(format!(
                "format is {:?}, expected {FORMAT:?}",
                b.format
            )));
        }
        if b.version != VERSION {
            return Err(EndorsementError::Bundle(format!(
                "unsupported bundle version {}",
                b.version
            )));
        }
        for (i, e) in b.snp.iter().enumerate() {
            STANDARD
                .decode(&e.der)
                .map_err(|err| EndorsementError::Bundle(format!("snp[{i}].der: {err}")))?;
            if Product::from_name(&e.product).is_none() {
                return Err(EndorsementError::Bundle(format!(
                    "snp[{i}]: unknown product {:?}",
                    e.product
                )));
            }
        }
        Ok(b)
    }

    /// Reads a bundle file.
    pub fn read(path: &Path) -> Result<Self, EndorsementError> {
        let bytes = std::fs::read(path).map_err(|source| EndorsementError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Writes the bundle as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), EndorsementError> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| EndorsementError::Bundle(e.to_string()))?;
        std::fs::write(path, json).map_err(|source| EndorsementError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// The endorsements relevant to a report: every CA certificate and CRL of
    /// the product (or of all products when it is unknown), and the VCEKs
    /// whose chip id matches (VLEKs are per provider, so all of them).
    pub fn snp_endorsements(
        &self,
        product: Option<Product>,
        chip_id: &[u8; 64],
    ) -> SnpEndorsements {
        let mut out = SnpEndorsements::default();
        for e in &self.snp {
            let p = Product::from_name(&e.product);
            if product.is_some() && p != product {
                continue;
            }
            let Ok(der) = STANDARD.decode(&e.der) else {
                continue;
            };
            match e.kind {
                EntryKind::Crl => out.crls.push(der),
                EntryKind::Vcek => {
                    let hwid_len = p.map_or(64, Product::hwid_len);
                    let want = hex::encode(chip_id.get(..hwid_len).unwrap_or(&[]));
                    if e.hwid.as_deref().map(str::to_ascii_lowercase) == Some(want) {
                        out.certs.push(der);
                    }
                }
                _ => out.certs.push(der),
            }
        }
        out
    }
}

impl Default for Bundle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_selection() {
        let mut b = Bundle::new();
        let chip = [7u8; 64];
        let entry = |kind, hwid: Option<&str>| Entry {
            kind,
            product: "Milan".into(),
            hwid: hwid.map(Into::into),
            tcb: None,
            source: None,
            der: String::new(),
        };
        b.push(entry(EntryKind::Vcek, Some(&hex::encode(chip))), b"vcek-a");
        b.push(
            entry(EntryKind::Vcek, Some(&hex::encode([8u8; 64]))),
            b"vcek-b",
        );
        b.push(entry(EntryKind::Ask, None), b"ask");
        b.push(entry(EntryKind::Ask, None), b"ask");
        b.push(entry(EntryKind::Crl, None), b"crl");
        assert_eq!(b.snp.len(), 4, "duplicates are dropped");
        let json = serde_json::to_vec(&b).unwrap();
        let back = Bundle::parse(&json).unwrap();
        assert_eq!(back, b);
        let e = back.snp_endorsements(Some(Product::Milan), &chip);
        assert_eq!(e.certs, vec![b"vcek-a".to_vec(), b"ask".to_vec()]);
        assert_eq!(e.crls, vec![b"crl".to_vec()]);
        assert!(
            back.snp_endorsements(Some(Product::Genoa), &chip)
                .is_empty()
        );
    }

    #[test]
    fn refuses_other_formats() {
        let mut v = serde_json::to_value(Bundle::new()).unwrap();
        v["version"] = 2.into();
        assert!(Bundle::parse(v.to_string().as_bytes()).is_err());
        let mut v = serde_json::to_value(Bundle::new()).unwrap();
        v["format"] = "x".into();
        assert!(Bundle::parse(v.to_string().as_bytes()).is_err());
        assert!(Bundle::parse(b"{").is_err());
    }
}
