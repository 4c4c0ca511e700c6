//! Decoded SNP fields: guest policy, platform info, key selection, TCB versions.

use serde::Serialize;

use crate::ParseError;

/// The processor generation, which decides the TCB layout, the KDS path and
/// which AMD root signs the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    /// The name used in AMD KDS URLs and in the VCEK product-name extension.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// All products, in release order.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// Parses a KDS product name (`Milan`) or a VCEK product-name extension
    /// (`Milan-B0`): the part before the first `-`.
    pub fn from_name(name: &str) -> Option<Product> {
        let base = name.split('-').next().unwrap_or(name);
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(base))
    }

    /// Identifies the product from the CPUID family/model in a v3+ report.
    /// Family 19h models 00h–0Fh are Milan, 10h–1Fh and A0h–AFh Genoa (incl.
    /// Bergamo and Siena, which share Genoa's keys); family 1Ah is Turin.
    pub fn from_cpuid(cpuid: Cpuid) -> Option<Product> {
        match (cpuid.family, cpuid.model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The TCB layout used by this product's firmware.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Milan | Product::Genoa => TcbLayout::MilanGenoa,
            Product::Turin => TcbLayout::Turin,
        }
    }

    /// The number of chip-id bytes that the VCEK hwID extension carries.
    pub fn hwid_len(self) -> usize {
        match self {
            Product::Turin => 8,
            Product::Milan | Product::Genoa => 64,
        }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// CPUID family, model and stepping (reports of version 3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// How a 64-bit `TCB_VERSION` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbLayout {
    /// Milan and Genoa: `[bl, tee, rsvd×4, snp, ucode]`.
    MilanGenoa,
    /// Turin: `[fmc, bl, tee, snp, rsvd×3, ucode]`.
    Turin,
}

/// A decoded `TCB_VERSION`: the security patch levels of each firmware part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbVersion {
    /// Turin only.
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes a raw TCB value with the given layout; reserved bytes must be zero.
    pub fn decode(
        raw: u64,
        layout: TcbLayout,
        field: &'static str,
        offset: usize,
    ) -> Result<Self, ParseError> {
        let b = raw.to_le_bytes();
        let [b0, b1, b2, b3, b4, b5, b6, b7] = b;
        match layout {
            TcbLayout::MilanGenoa => {
                if [b2, b3, b4, b5] != [0; 4] {
                    return Err(ParseError::ReservedNonZero { field, offset });
                }
                Ok(TcbVersion {
                    fmc: None,
                    bootloader: b0,
                    tee: b1,
                    snp: b6,
                    microcode: b7,
                })
            }
            TcbLayout::Turin => {
                if [b4, b5, b6] != [0; 3] {
                    return Err(ParseError::ReservedNonZero { field, offset });
                }
                Ok(TcbVersion {
                    fmc: Some(b0),
                    bootloader: b1,
                    tee: b2,
                    snp: b3,
                    microcode: b7,
                })
            }
        }
    }

    /// Encodes with the given layout. Fails if `fmc` does not fit the layout
    /// (present on Milan/Genoa, absent on Turin).
    pub fn encode(&self, layout: TcbLayout) -> Result<u64, ParseError> {
        let bytes = match (layout, self.fmc) {
            (TcbLayout::MilanGenoa, None) => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
            (TcbLayout::Turin, Some(fmc)) => [
                fmc,
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
            (TcbLayout::MilanGenoa, Some(_)) => {
                return Err(ParseError::InvalidField {
                    field: "tcb.fmc",
                    reason: "an FMC version exists only in the Turin TCB layout".into(),
                });
            }
            (TcbLayout::Turin, None) => {
                return Err(ParseError::InvalidField {
                    field: "tcb.fmc",
                    reason: "the Turin TCB layout requires an FMC version".into(),
                });
            }
        };
        Ok(u64::from_le_bytes(bytes))
    }
}

impl std::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// The guest policy (report offset 0x08), decoded. Bit 17 is reserved and
/// must be one; bits 63:26 are reserved and must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestPolicy {
    pub raw: u64,
    pub abi_minor: u8,
    pub abi_major: u8,
    pub smt_allowed: bool,
    pub migrate_ma: bool,
    pub debug: bool,
    pub single_socket: bool,
    pub cxl_allowed: bool,
    pub mem_aes_256_xts: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding: bool,
    pub page_swap_disabled: bool,
}

impl GuestPolicy {
    const RESERVED_ONE: u64 = 1 << 17;
    const RESERVED_ZERO: u64 = !((1u64 << 26) - 1);

    /// Decodes and checks the reserved bits.
    pub fn decode(raw: u64) -> Result<Self, ParseError> {
        if raw & Self::RESERVED_ONE == 0 {
            return Err(ParseError::InvalidField {
                field: "policy",
                reason: "reserved bit 17 must be one".into(),
            });
        }
        if raw & Self::RESERVED_ZERO != 0 {
            return Err(ParseError::ReservedNonZero {
                field: "policy bits 63:26",
                offset: 0x08,
            });
        }
        let bit = |n: u32| raw & (1u64 << n) != 0;
        let [minor, major, ..] = raw.to_le_bytes();
        Ok(GuestPolicy {
            raw,
            abi_minor: minor,
            abi_major: major,
            smt_allowed: bit(16),
            migrate_ma: bit(18),
            debug: bit(19),
            single_socket: bit(20),
            cxl_allowed: bit(21),
            mem_aes_256_xts: bit(22),
            rapl_disabled: bit(23),
            ciphertext_hiding: bit(24),
            page_swap_disabled: bit(25),
        })
    }
}

/// Platform information (report offset 0x40), decoded. Bits 63:8 are
/// reserved and must be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformInfo {
    pub raw: u64,
    pub smt_enabled: bool,
    pub tsme_enabled: bool,
    pub ecc_enabled: bool,
    pub rapl_disabled: bool,
    pub ciphertext_hiding_enabled: bool,
    pub alias_check_complete: bool,
    pub tio_enabled: bool,
}

impl PlatformInfo {
    /// Decodes and checks the reserved bits.
    pub fn decode(raw: u64) -> Result<Self, ParseError> {
        if raw >> 8 != 0 {
            return Err(ParseError::ReservedNonZero {
                field: "platform_info bits 63:8",
                offset: 0x40,
            });
        }
        let bit = |n: u32| raw & (1u64 << n) != 0;
        Ok(PlatformInfo {
            raw,
            smt_enabled: bit(0),
            tsme_enabled: bit(1),
            ecc_enabled: bit(2),
            rapl_disabled: bit(3),
            ciphertext_hiding_enabled: bit(4),
            alias_check_complete: bit(5),
            tio_enabled: bit(7),
        })
    }
}

/// Which key signed the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (per chip, per TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider, per TCB).
    Vlek,
    /// No signature (the guest asked for an unsigned report).
    None,
}

/// Key information (report offset 0x48), decoded. Bits 31:5 are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub raw: u32,
    pub author_key_en: bool,
    pub mask_chip_key: bool,
    pub signing_key: SigningKey,
}

impl KeyInfo {
    /// Decodes and checks the reserved bits and the signing-key selector.
    pub fn decode(raw: u32) -> Result<Self, ParseError> {
        if raw >> 5 != 0 {
            return Err(ParseError::ReservedNonZero {
                field: "key_info bits 31:5",
                offset: 0x48,
            });
        }
        let signing_key = match (raw >> 2) & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            7 => SigningKey::None,
            other => {
                return Err(ParseError::InvalidField {
                    field: "key_info.signing_key",
                    reason: format!("reserved signing-key selector {other}"),
                });
            }
        };
        Ok(KeyInfo {
            raw,
            author_key_en: raw & 1 != 0,
            mask_chip_key: raw & 2 != 0,
            signing_key,
        })
    }
}

/// A firmware version (major.minor, build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} build {}", self.major, self.minor, self.build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_round_trip() {
        let milan = TcbVersion {
            fmc: None,
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        };
        let raw = milan.encode(TcbLayout::MilanGenoa).unwrap();
        assert_eq!(raw.to_le_bytes(), [3, 0, 0, 0, 0, 0, 8, 115]);
        assert_eq!(
            TcbVersion::decode(raw, TcbLayout::MilanGenoa, "t", 0).unwrap(),
            milan
        );
        let turin = TcbVersion {
            fmc: Some(1),
            bootloader: 2,
            tee: 3,
            snp: 4,
            microcode: 5,
        };
        let raw = turin.encode(TcbLayout::Turin).unwrap();
        assert_eq!(raw.to_le_bytes(), [1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(
            TcbVersion::decode(raw, TcbLayout::Turin, "t", 0).unwrap(),
            turin
        );
        assert!(milan.encode(TcbLayout::Turin).is_err());
        assert!(turin.encode(TcbLayout::MilanGenoa).is_err());
    }

    #[test]
    fn tcb_reserved_bytes_rejected() {
        let raw = u64::from_le_bytes([3, 0, 1, 0, 0, 0, 8, 115]);
        assert!(TcbVersion::decode(raw, TcbLayout::MilanGenoa, "t", 0).is_err());
        let raw = u64::from_le_bytes([1, 2, 3, 4, 0, 9, 0, 5]);
        assert!(TcbVersion::decode(raw, TcbLayout::Turin, "t", 0).is_err());
    }

    #[test]
    fn policy_bits() {
        let p = GuestPolicy::decode(0x3001f).unwrap();
        assert_eq!((p.abi_major, p.abi_minor), (0, 0x1f));
        assert!(p.smt_allowed && !p.debug && !p.migrate_ma);
        assert!(GuestPolicy::decode(0x8_0000 | 0x2_0000).unwrap().debug);
        assert!(GuestPolicy::decode(0x1001f).is_err(), "bit 17 must be one");
        assert!(GuestPolicy::decode(0x3001f | 1 << 40).is_err());
    }

    #[test]
    fn key_info_selector() {
        assert_eq!(KeyInfo::decode(0).unwrap().signing_key, SigningKey::Vcek);
        assert_eq!(KeyInfo::decode(4).unwrap().signing_key, SigningKey::Vlek);
        assert_eq!(KeyInfo::decode(0x1c).unwrap().signing_key, SigningKey::None);
        assert!(KeyInfo::decode(8).is_err());
        assert!(KeyInfo::decode(0x20).is_err());
    }

    #[test]
    fn products() {
        let c = |family, model| Cpuid {
            family,
            model,
            stepping: 1,
        };
        assert_eq!(Product::from_cpuid(c(0x19, 0x01)), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(c(0x19, 0x11)), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(c(0x1a, 0x02)), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(c(0x17, 0x31)), None);
        assert_eq!(Product::from_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_name("genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_name("Rome"), None);
    }
}
