//! NVIDIA reference integrity manifests (RIMs): SWID tags (ISO/IEC
//! 19770-2, TCG RIM information model) listing, per measurement index, the
//! SHA-384 values a GPU's driver or VBIOS may report. NVIDIA publishes one
//! for every driver and VBIOS version.
//!
//! A RIM given to Veil is operator configuration, like a reference value:
//! its XML-DSig signature is not checked here (doing so needs XML
//! canonicalisation, which no well-kept Rust crate offers); obtain RIMs from
//! NVIDIA's RIM service over TLS or verify them with NVIDIA's tools first.
//! Parsing is strict: every `Measurement` resource needs its index, its
//! `active` flag and exactly `alternatives` 48-byte hashes.

use std::collections::BTreeMap;

/// SWID's namespace.
pub const SWID_NS: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// The namespace of the `HashN` attributes.
pub const SHA384_NS: &str = "http://www.w3.org/2001/04/xmlenc#sha384";

/// One measurement entry of a RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimEntry {
    /// Whether the GPU must report this measurement.
    pub active: bool,
    /// The accepted values (any one matches).
    pub values: Vec<[u8; 48]>,
}

/// A parsed RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rim {
    /// The SWID `name` (e.g. `GH100`).
    pub name: String,
    /// `Meta/@colloquialVersion`: the driver or VBIOS version it is for.
    pub version: String,
    /// `Meta/@edition` (`GPU`, `driver`, …).
    pub edition: String,
    /// By RIM index (0-based: RIM index *i* is SPDM measurement block
    /// *i* + 1).
    pub entries: BTreeMap<u32, RimEntry>,
}

/// Why a RIM was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("RIM {what}: {reason}")]
pub struct RimError {
    pub what: String,
    pub reason: String,
}

fn err(what: &str, reason: impl Into<String>) -> RimError {
    RimError {
        what: what.to_string(),
        reason: reason.into(),
    }
}

impl Rim {
    /// Parses a RIM (SWID XML); `what` names it in errors.
    pub fn parse(what: &str, xml: &[u8]) -> Result<Self, RimError> {
        let text = std::str::from_utf8(xml).map_err(|_| err(what, "not UTF-8"))?;
        let doc = roxmltree::Document::parse(text).map_err(|e| err(what, e.to_string()))?;
        let root = doc.root_element();
        if !root.has_tag_name((SWID_NS, "SoftwareIdentity")) {
            return Err(err(what, "not a SWID SoftwareIdentity"));
        }
        let meta = root
            .children()
            .find(|n| n.has_tag_name((SWID_NS, "Meta")))
            .ok_or_else(|| err(what, "no Meta element"))?;
        let payload = root
            .children()
            .find(|n| n.has_tag_name((SWID_NS, "Payload")))
            .ok_or_else(|| err(what, "no Payload element"))?;
        let mut entries = BTreeMap::new();
        for r in payload
            .children()
            .filter(|n| n.has_tag_name((SWID_NS, "Resource")))
        {
            if r.attribute("type") != Some("Measurement") {
                continue;
            }
            let index: u32 = r
                .attribute("index")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| err(what, "a Measurement without a numeric index"))?;
            let active = match r.attribute("active") {
                Some("True") | Some("true") => true,
                Some("False") | Some("false") => false,
                other => {
                    return Err(err(
                        what,
                        format!("measurement {index}: active = {other:?}"),
                    ));
                }
            };
            let count: usize = r
                .attribute("alternatives")
                .and_then(|a| a.parse().ok())
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| err(what, format!("measurement {index}: bad alternatives")))?;
            let mut values = Vec::with_capacity(count);
            for k in 0..count {
                let name = format!("Hash{k}");
                let h = r
                    .attribute((SHA384_NS, name.as_str()))
                    .ok_or_else(|| err(what, format!("measurement {index}: no {name}")))?;
                let bytes = hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 48]>::try_from(b).ok())
                    .ok_or_else(|| {
                        err(
                            what,
                            format!("measurement {index}: {name} is not 48 bytes of hex"),
                        )
                    })?;
                values.push(bytes);
            }
            if entries.insert(index, RimEntry { active, values }).is_some() {
                return Err(err(what, format!("measurement {index} appears twice")));
            }
        }
        if entries.is_empty() {
            return Err(err(what, "no measurements"));
        }
        Ok(Rim {
            name: root.attribute("name").unwrap_or_default().to_string(),
            version: meta
                .attribute("colloquialVersion")
                .unwrap_or_default()
                .to_string(),
            edition: meta.attribute("edition").unwrap_or_default().to_string(),
            entries,
        })
    }
}

/// A RIM in SWID XML for `measurements` (SPDM block index → value), for
/// tests and the simulator: every listed block active with one value.
pub fn encode(name: &str, version: &str, measurements: &BTreeMap<u8, Vec<u8>>) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SoftwareIdentity xmlns=\"{SWID_NS}\" xmlns:sha384=\"{SHA384_NS}\" name=\"{name}\" tagId=\"veil-{name}-{version}\" version=\"{version}\">\n  <Meta colloquialVersion=\"{version}\" edition=\"GPU\" product=\"{name}\"/>\n  <Payload>\n"
    );
    for (block, value) in measurements {
        out.push_str(&format!(
            "    <Resource type=\"Measurement\" index=\"{}\" active=\"True\" alternatives=\"1\" sha384:Hash0=\"{}\" size=\"48\"/>\n",
            u32::from(*block).saturating_sub(1),
            hex::encode(value)
        ));
    }
    out.push_str("  </Payload>\n</SoftwareIdentity>\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_encodes_and_refuses_the_rest() {
        let m: BTreeMap<u8, Vec<u8>> = [(1u8, vec![0xaa; 48]), (3, vec![0xbb; 48])].into();
        let xml = encode("GH100", "96.00.9F.00.01", &m);
        let rim = Rim::parse("test", xml.as_bytes()).unwrap();
        assert_eq!(rim.version, "96.00.9F.00.01");
        assert_eq!(rim.entries.len(), 2);
        assert_eq!(rim.entries[&0].values, vec![[0xaa; 48]]);
        assert_eq!(rim.entries[&2].values, vec![[0xbb; 48]]);
        for (from, to) in [
            ("index=\"0\"", "index=\"x\""),
            ("active=\"True\"", "active=\"yes\""),
            ("alternatives=\"1\"", "alternatives=\"2\""),
            ("SoftwareIdentity xmlns", "SoftwareIdentityX xmlns"),
            (&hex::encode([0xaa; 48]), &hex::encode([0xaa; 47])),
            ("index=\"2\"", "index=\"0\""),
        ] {
            let bad = xml
                .replacen(from, to, 1)
                .replace("</SoftwareIdentityX>", "</SoftwareIdentity>");
            assert!(Rim::parse("test", bad.as_bytes()).is_err(), "{from} → {to}");
        }
        assert!(Rim::parse("test", b"<a/>").is_err());
        assert!(Rim::parse("test", &[0xff, 0xfe]).is_err());
    }
}
