//! The SNP `ATTESTATION_REPORT`: 0x4A0 bytes, little-endian, versions 2, 3, 5.
//!
//! ```text
//! 0x000 VERSION u32            0x0E0 ID_KEY_DIGEST 48        0x1A0 CHIP_ID 64
//! 0x004 GUEST_SVN u32          0x110 AUTHOR_KEY_DIGEST 48    0x1E0 COMMITTED_TCB u64
//! 0x008 POLICY u64             0x140 REPORT_ID 32            0x1E8 CURRENT build/minor/major/rsvd
//! 0x010 FAMILY_ID 16           0x160 REPORT_ID_MA 32         0x1EC COMMITTED build/minor/major/rsvd
//! 0x020 IMAGE_ID 16            0x180 REPORTED_TCB u64        0x1F0 LAUNCH_TCB u64
//! 0x030 VMPL u32               0x188 CPUID fam/mod/step (v3+) 0x1F8 LAUNCH_MIT_VECTOR u64 (v5+)
//! 0x034 SIGNATURE_ALGO u32     0x18B reserved (21 bytes)     0x200 CURRENT_MIT_VECTOR u64 (v5+)
//! 0x038 CURRENT_TCB u64        0x050 REPORT_DATA 64          0x208 reserved (152 bytes)
//! 0x040 PLATFORM_INFO u64      0x090 MEASUREMENT 48          0x2A0 SIGNATURE: R 72, S 72 (LE),
//! 0x048 KEY_INFO u32           0x0C0 HOST_DATA 32                  reserved 368
//! 0x04C reserved u32
//! ```
//! The signature covers bytes 0x000–0x29F exactly as received; the parsed
//! report keeps those bytes so that the verifier never re-encodes.

use crate::ParseError;
use crate::reader::{Reader, Writer};

use super::types::{
    Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, Product, SigningKey, TcbLayout,
    TcbVersion,
};

/// Total length of a report.
pub const REPORT_LEN: usize = 0x4A0;
/// Offset of the signature; the signed range is `0..SIGNATURE_OFFSET`.
pub const SIGNATURE_OFFSET: usize = 0x2A0;
/// Length of the signed range.
pub const SIGNED_LEN: usize = SIGNATURE_OFFSET;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only one defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Report versions this parser understands.
pub const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];

/// The report signature: ECDSA P-384 `r` and `s`, little-endian, each in a
/// 72-byte field (only the low 48 bytes are significant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub r: [u8; 72],
    pub s: [u8; 72],
}

/// Every field of a report, decoded. Built by [`AttestationReport::parse`] or
/// filled in by an encoder (the simulator, the CoCo JSON conversion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBody {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: GuestPolicy,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub sig_algo: u32,
    pub current_tcb: TcbVersion,
    pub platform_info: PlatformInfo,
    pub key_info: KeyInfo,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id: [u8; 32],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: TcbVersion,
    /// Present in version 3 and later.
    pub cpuid: Option<Cpuid>,
    pub chip_id: [u8; 64],
    pub committed_tcb: TcbVersion,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub launch_tcb: TcbVersion,
    /// Present in version 5 and later.
    pub launch_mit_vector: Option<u64>,
    /// Present in version 5 and later.
    pub current_mit_vector: Option<u64>,
    pub signature: Signature,
}

impl ReportBody {
    /// The product named by the CPUID fields (version 3+), if known.
    pub fn product(&self) -> Option<Product> {
        self.cpuid.and_then(Product::from_cpuid)
    }

    /// The TCB layout of this report: Turin's when the CPUID says Turin,
    /// Milan/Genoa's otherwise (version 2 reports predate Turin).
    pub fn tcb_layout(&self) -> TcbLayout {
        layout_for(self.cpuid)
    }

    /// The signing key named by the key-info field.
    pub fn signing_key(&self) -> SigningKey {
        self.key_info.signing_key
    }

    /// Encodes the body into the exact 0x4A0-byte wire form.
    pub fn encode(&self) -> Result<[u8; REPORT_LEN], ParseError> {
        if !SUPPORTED_VERSIONS.contains(&self.version) {
            return Err(ParseError::UnsupportedVersion {
                what: "SNP attestation report",
                version: self.version,
            });
        }
        if self.cpuid.is_some() != (self.version >= 3) {
            return Err(ParseError::InvalidField {
                field: "cpuid",
                reason: "CPUID fields are present exactly in report versions 3 and later".into(),
            });
        }
        if self.launch_mit_vector.is_some() != (self.version >= 5)
            || self.current_mit_vector.is_some() != (self.version >= 5)
        {
            return Err(ParseError::InvalidField {
                field: "mit_vector",
                reason: "mitigation vectors are present exactly in report versions 5 and later"
                    .into(),
            });
        }
        let layout = self.tcb_layout();
        let mut out = [0u8; REPORT_LEN];
        let mut w = Writer::new(&mut out);
        w.put("version", &self.version.to_le_bytes())?;
        w.put("guest_svn", &self.guest_svn.to_le_bytes())?;
        w.put("policy", &self.policy.raw.to_le_bytes())?;
        w.put("family_id", &self.family_id)?;
        w.put("image_id", &self.image_id)?;
        w.put("vmpl", &self.vmpl.to_le_bytes())?;
        w.put("sig_algo", &self.sig_algo.to_le_bytes())?;
        w.put(
            "current_tcb",
            &self.current_tcb.encode(layout)?.to_le_bytes(),
        )?;
        w.put("platform_info", &self.platform_info.raw.to_le_bytes())?;
        w.put("key_info", &self.key_info.raw.to_le_bytes())?;
        w.zeros("reserved_4c", 4)?;
        w.put("report_data", &self.report_data)?;
        w.put("measurement", &self.measurement)?;
        w.put("host_data", &self.host_data)?;
        w.put("id_key_digest", &self.id_key_digest)?;
        w.put("author_key_digest", &self.author_key_digest)?;
        w.put("report_id", &self.report_id)?;
        w.put("report_id_ma", &self.report_id_ma)?;
        w.put(
            "reported_tcb",
            &self.reported_tcb.encode(layout)?.to_le_bytes(),
        )?;
        match self.cpuid {
            Some(c) => {
                w.put("cpuid", &[c.family, c.model, c.stepping])?;
                w.zeros("reserved_18b", 21)?;
            }
            None => w.zeros("reserved_188", 24)?,
        }
        w.put("chip_id", &self.chip_id)?;
        w.put(
            "committed_tcb",
            &self.committed_tcb.encode(layout)?.to_le_bytes(),
        )?;
        let v = self.current_version;
        w.put("current_version", &[v.build, v.minor, v.major, 0])?;
        let v = self.committed_version;
        w.put("committed_version", &[v.build, v.minor, v.major, 0])?;
        w.put("launch_tcb", &self.launch_tcb.encode(layout)?.to_le_bytes())?;
        match (self.launch_mit_vector, self.current_mit_vector) {
            (Some(l), Some(c)) => {
                w.put("launch_mit_vector", &l.to_le_bytes())?;
                w.put("current_mit_vector", &c.to_le_bytes())?;
                w.zeros("reserved_208", SIGNATURE_OFFSET - 0x208)?;
            }
            _ => w.zeros("reserved_1f8", SIGNATURE_OFFSET - 0x1F8)?,
        }
        w.put("signature.r", &self.signature.r)?;
        w.put("signature.s", &self.signature.s)?;
        w.zeros("signature.reserved", REPORT_LEN - SIGNATURE_OFFSET - 144)?;
        Ok(out)
    }
}

fn layout_for(cpuid: Option<Cpuid>) -> TcbLayout {
    cpuid
        .and_then(Product::from_cpuid)
        .map_or(TcbLayout::MilanGenoa, Product::tcb_layout)
}

/// A parsed report: the decoded fields plus the bytes exactly as received.
/// Untrusted until `veil_verifier::snp` has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    raw: Box<[u8; REPORT_LEN]>,
    body: ReportBody,
}

impl std::ops::Deref for AttestationReport {
    type Target = ReportBody;
    fn deref(&self) -> &ReportBody {
        &self.body
    }
}

impl AttestationReport {
    /// Parses a report strictly: exactly 0x4A0 bytes, a known version (2, 3,
    /// 5) and signature algorithm, every reserved field zero.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let raw: [u8; REPORT_LEN] = bytes.try_into().map_err(|_| ParseError::WrongLength {
            what: "SNP attestation report",
            expected: REPORT_LEN,
            actual: bytes.len(),
        })?;
        let body = parse_body(&raw)?;
        Ok(Self {
            raw: Box::new(raw),
            body,
        })
    }

    /// The decoded fields.
    pub fn body(&self) -> &ReportBody {
        &self.body
    }

    /// The whole report as received.
    pub fn as_bytes(&self) -> &[u8; REPORT_LEN] {
        &self.raw
    }

    /// The signed range (0x000–0x29F) as received.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or(&[])
    }
}

fn parse_body(raw: &[u8; REPORT_LEN]) -> Result<ReportBody, ParseError> {
    let mut r = Reader::new(raw);
    let version = r.u32_le("version")?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(ParseError::UnsupportedVersion {
            what: "SNP attestation report",
            version,
        });
    }
    let guest_svn = r.u32_le("guest_svn")?;
    let policy = GuestPolicy::decode(r.u64_le("policy")?)?;
    let family_id = r.array("family_id")?;
    let image_id = r.array("image_id")?;
    let vmpl = r.u32_le("vmpl")?;
    if vmpl > 3 {
        return Err(ParseError::InvalidField {
            field: "vmpl",
            reason: format!("{vmpl} is not a VMPL (0-3)"),
        });
    }
    let sig_algo = r.u32_le("sig_algo")?;
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(ParseError::UnsupportedSignatureAlgorithm(sig_algo));
    }
    // The TCB layout depends on the CPUID fields at 0x188, read ahead here.
    let cpuid = if version >= 3 {
        match raw.get(0x188..0x18B) {
            Some([family, model, stepping]) => Some(Cpuid {
                family: *family,
                model: *model,
                stepping: *stepping,
            }),
            _ => None,
        }
    } else {
        None
    };
    let layout = layout_for(cpuid);
    let tcb = |r: &mut Reader<'_>, field: &'static str| -> Result<TcbVersion, ParseError> {
        let offset = r.offset();
        TcbVersion::decode(r.u64_le(field)?, layout, field, offset)
    };
    let current_tcb = tcb(&mut r, "current_tcb")?;
    let platform_info = PlatformInfo::decode(r.u64_le("platform_info")?)?;
    let key_info = KeyInfo::decode(r.u32_le("key_info")?)?;
    r.zeros("reserved_4c", 4)?;
    let report_data = r.array("report_data")?;
    let measurement = r.array("measurement")?;
    let host_data = r.array("host_data")?;
    let id_key_digest = r.array("id_key_digest")?;
    let author_key_digest = r.array("author_key_digest")?;
    let report_id = r.array("report_id")?;
    let report_id_ma = r.array("report_id_ma")?;
    let reported_tcb = tcb(&mut r, "reported_tcb")?;
    if version >= 3 {
        r.take("cpuid", 3)?;
        r.zeros("reserved_18b", 21)?;
    } else {
        r.zeros("reserved_188", 24)?;
    }
    let chip_id = r.array("chip_id")?;
    let committed_tcb = tcb(&mut r, "committed_tcb")?;
    let fw = |r: &mut Reader<'_>, field: &'static str| -> Result<FirmwareVersion, ParseError> {
        let build = r.u8(field)?;
        let minor = r.u8(field)?;
        let major = r.u8(field)?;
        r.zeros(field, 1)?;
        Ok(FirmwareVersion {
            major,
            minor,
            build,
        })
    };
    let current_version = fw(&mut r, "current_version")?;
    let committed_version = fw(&mut r, "committed_version")?;
    let launch_tcb = tcb(&mut r, "launch_tcb")?;
    let (launch_mit_vector, current_mit_vector) = if version >= 5 {
        let l = r.u64_le("launch_mit_vector")?;
        let c = r.u64_le("current_mit_vector")?;
        r.zeros("reserved_208", SIGNATURE_OFFSET - 0x208)?;
        (Some(l), Some(c))
    } else {
        r.zeros("reserved_1f8", SIGNATURE_OFFSET - 0x1F8)?;
        (None, None)
    };
    let sig_r = r.array("signature.r")?;
    let sig_s = r.array("signature.s")?;
    r.zeros("signature.reserved", REPORT_LEN - SIGNATURE_OFFSET - 144)?;
    r.finish("SNP attestation report")?;
    Ok(ReportBody {
        version,
        guest_svn,
        policy,
        family_id,
        image_id,
        vmpl,
        sig_algo,
        current_tcb,
        platform_info,
        key_info,
        report_data,
        measurement,
        host_data,
        id_key_digest,
        author_key_digest,
        report_id,
        report_id_ma,
        reported_tcb,
        cpuid,
        chip_id,
        committed_tcb,
        current_version,
        committed_version,
        launch_tcb,
        launch_mit_vector,
        current_mit_vector,
        signature: Signature { r: sig_r, s: sig_s },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid-looking body for encoder tests (unsigned: zero signature).
    pub(crate) fn sample_body(version: u32, product: Product) -> ReportBody {
        let cpuid = (version >= 3).then_some(match product {
            Product::Milan => Cpuid {
                family: 0x19,
                model: 0x01,
                stepping: 1,
            },
            Product::Genoa => Cpuid {
                family: 0x19,
                model: 0x11,
                stepping: 1,
            },
            Product::Turin => Cpuid {
                family: 0x1a,
                model: 0x02,
                stepping: 1,
            },
        });
        let fmc = (product == Product::Turin).then_some(1);
        let tcb = TcbVersion {
            fmc,
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
        };
        let v5 = (version >= 5).then_some(3);
        ReportBody {
            version,
            guest_svn: 1,
            policy: GuestPolicy::decode(0x30000).unwrap(),
            family_id: [1; 16],
            image_id: [2; 16],
            vmpl: 0,
            sig_algo: 1,
            current_tcb: tcb,
            platform_info: PlatformInfo::decode(0x25).unwrap(),
            key_info: KeyInfo::decode(0).unwrap(),
            report_data: [3; 64],
            measurement: [4; 48],
            host_data: [5; 32],
            id_key_digest: [6; 48],
            author_key_digest: [7; 48],
            report_id: [8; 32],
            report_id_ma: [0xff; 32],
            reported_tcb: tcb,
            cpuid,
            chip_id: [9; 64],
            committed_tcb: tcb,
            current_version: FirmwareVersion {
                major: 1,
                minor: 55,
                build: 21,
            },
            committed_version: FirmwareVersion {
                major: 1,
                minor: 55,
                build: 21,
            },
            launch_tcb: tcb,
            launch_mit_vector: v5,
            current_mit_vector: v5,
            signature: Signature {
                r: [0x11; 72],
                s: [0x22; 72],
            },
        }
    }

    #[test]
    fn encode_parse_round_trip_all_versions() {
        for (v, p) in [
            (2, Product::Milan),
            (3, Product::Genoa),
            (3, Product::Turin),
            (5, Product::Turin),
            (5, Product::Milan),
        ] {
            let body = sample_body(v, p);
            let bytes = body.encode().unwrap();
            let parsed = AttestationReport::parse(&bytes).unwrap();
            assert_eq!(parsed.body(), &body, "version {v} {p}");
            assert_eq!(parsed.as_bytes(), &bytes);
        }
    }

    #[test]
    fn wrong_length_and_versions() {
        let bytes = sample_body(3, Product::Milan).encode().unwrap();
        assert!(matches!(
            AttestationReport::parse(&bytes[..REPORT_LEN - 1]),
            Err(ParseError::WrongLength { .. })
        ));
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(AttestationReport::parse(&long).is_err());
        for v in [0u32, 1, 4, 6, 0xffff_ffff] {
            let mut b = bytes;
            b[..4].copy_from_slice(&v.to_le_bytes());
            assert_eq!(
                AttestationReport::parse(&b),
                Err(ParseError::UnsupportedVersion {
                    what: "SNP attestation report",
                    version: v
                })
            );
        }
        let mut b = bytes;
        b[0x34] = 2;
        assert_eq!(
            AttestationReport::parse(&b),
            Err(ParseError::UnsupportedSignatureAlgorithm(2))
        );
    }

    #[test]
    fn every_reserved_byte_is_checked() {
        for (v, p) in [
            (2, Product::Milan),
            (3, Product::Genoa),
            (5, Product::Turin),
        ] {
            let bytes = sample_body(v, p).encode().unwrap();
            let mut reserved: Vec<std::ops::Range<usize>> = vec![
                0x4C..0x50,
                0x1EB..0x1EC,
                0x1EF..0x1F0,
                0x2A0 + 144..REPORT_LEN,
            ];
            reserved.push(if v >= 3 { 0x18B..0x1A0 } else { 0x188..0x1A0 });
            reserved.push(if v >= 5 { 0x208..0x2A0 } else { 0x1F8..0x2A0 });
            for range in reserved {
                for i in range {
                    let mut b = bytes;
                    b[i] = 1;
                    assert!(
                        matches!(
                            AttestationReport::parse(&b),
                            Err(ParseError::ReservedNonZero { .. })
                        ),
                        "v{v}: byte {i:#x}"
                    );
                }
            }
        }
    }
}
