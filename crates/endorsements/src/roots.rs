//! Vendor trust anchors, compiled in and pinned.
//!
//! The PEM files are AMD's public ARK/ASK/ASVK bundles (as served by AMD KDS
//! at `/vcek/v1/{product}/cert_chain` and `/vlek/v1/{product}/cert_chain`).
//! Only the ARKs are trust anchors; the ASK/ASVK are intermediates that the
//! verifier still checks against the ARK. A root whose SHA-256 fingerprint
//! does not match its pin is never used (and a unit test keeps them in step).

/// AMD SEV-SNP roots.
pub mod amd {
    use veil_evidence::snp::Product;

    use crate::certs::{Blob, decode_blobs};

    /// ASK, ARK and ASVK for Milan.
    pub const MILAN_PEM: &str = include_str!("../roots/amd/milan.pem");
    /// ASK, ARK and ASVK for Genoa.
    pub const GENOA_PEM: &str = include_str!("../roots/amd/genoa.pem");
    /// ASK, ARK and ASVK for Turin.
    pub const TURIN_PEM: &str = include_str!("../roots/amd/turin.pem");

    /// SHA-256 of the DER of ARK-Milan.
    pub const ARK_MILAN_SHA256: &str =
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";
    /// SHA-256 of the DER of ARK-Genoa.
    pub const ARK_GENOA_SHA256: &str =
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1";
    /// SHA-256 of the DER of ARK-Turin.
    pub const ARK_TURIN_SHA256: &str =
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a";

    /// The embedded PEM bundle of a product.
    pub fn bundle_pem(product: Product) -> &'static str {
        match product {
            Product::Milan => MILAN_PEM,
            Product::Genoa => GENOA_PEM,
            Product::Turin => TURIN_PEM,
        }
    }

    /// The pinned ARK fingerprint of a product.
    pub fn ark_pin(product: Product) -> &'static str {
        match product {
            Product::Milan => ARK_MILAN_SHA256,
            Product::Genoa => ARK_GENOA_SHA256,
            Product::Turin => ARK_TURIN_SHA256,
        }
    }

    /// SHA-256 of some DER, lower-case hex.
    pub fn fingerprint(der: &[u8]) -> String {
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
    }

    /// The embedded certificates of a product (DER), in file order:
    /// ASK, ARK, ASVK.
    pub fn embedded_certs(product: Product) -> Vec<Vec<u8>> {
        decode_blobs(product.name(), bundle_pem(product).as_bytes())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| match b {
                Blob::Certificate(der) => Some(der),
                Blob::Crl(_) => None,
            })
            .collect()
    }

    /// The pinned ARK of a product (DER): the embedded certificate whose
    /// fingerprint equals the pin, or `None` if none does.
    pub fn ark(product: Product) -> Option<Vec<u8>> {
        let pin = ark_pin(product);
        embedded_certs(product)
            .into_iter()
            .find(|der| fingerprint(der) == pin)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_pin_matches_an_embedded_root() {
            for p in Product::ALL {
                assert_eq!(embedded_certs(p).len(), 3, "{p}");
                let ark = ark(p).unwrap_or_else(|| panic!("no ARK for {p}"));
                assert_eq!(fingerprint(&ark), ark_pin(p));
            }
        }
    }
}

/// Intel's SGX/TDX DCAP root.
pub mod intel {
    /// The Intel SGX Root CA (DER), the root of every PCK and TCB-signing chain.
    pub const SGX_ROOT_CA_DER: &[u8] = include_bytes!("../roots/intel/IntelSGXRootCA.der");
    /// Its SHA-256 fingerprint.
    pub const SGX_ROOT_CA_SHA256: &str =
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

    /// The pinned root, or `None` if the embedded file does not match its pin.
    pub fn sgx_root() -> Option<&'static [u8]> {
        (super::amd::fingerprint(SGX_ROOT_CA_DER) == SGX_ROOT_CA_SHA256).then_some(SGX_ROOT_CA_DER)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn pin_matches() {
            assert!(super::sgx_root().is_some());
        }
    }
}

/// The decoded certificate of a one-certificate PEM, if its fingerprint
/// equals `pin` (a pinned root is never used otherwise).
fn pinned_pem(name: &str, pem: &str, pin: &str) -> Option<Vec<u8>> {
    decode_first_cert(name, pem).filter(|der| amd::fingerprint(der) == pin)
}

fn decode_first_cert(name: &str, pem: &str) -> Option<Vec<u8>> {
    crate::certs::decode_blobs(name, pem.as_bytes())
        .ok()?
        .into_iter()
        .find_map(|b| match b {
            crate::certs::Blob::Certificate(der) => Some(der),
            crate::certs::Blob::Crl(_) => None,
        })
}

/// NVIDIA's device-identity root: every Hopper/Blackwell GPU certificate
/// chain ends at it (NVIDIA publishes it with nvtrust).
pub mod nvidia {
    /// The NVIDIA Device Identity CA (PEM).
    pub const DEVICE_IDENTITY_CA_PEM: &str = include_str!("../roots/nvidia/device_identity_ca.pem");
    /// Its SHA-256 fingerprint.
    pub const DEVICE_IDENTITY_CA_SHA256: &str =
        "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48";

    /// The pinned root (DER), or `None` if the embedded file does not match
    /// its pin.
    pub fn device_identity_ca() -> Option<Vec<u8>> {
        super::pinned_pem(
            "NVIDIA Device Identity CA",
            DEVICE_IDENTITY_CA_PEM,
            DEVICE_IDENTITY_CA_SHA256,
        )
    }
}

/// AWS's Nitro Enclaves root (`aws.nitro-enclaves`), as AWS publishes it
/// for attestation-document verification.
pub mod aws {
    /// The AWS Nitro Enclaves root (PEM).
    pub const NITRO_ROOT_PEM: &str = include_str!("../roots/aws/nitro_enclaves_root.pem");
    /// Its SHA-256 fingerprint (as AWS documents it).
    pub const NITRO_ROOT_SHA256: &str =
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

    /// The pinned root (DER), or `None` if the embedded file does not match
    /// its pin.
    pub fn nitro_root() -> Option<Vec<u8>> {
        super::pinned_pem("AWS Nitro Enclaves root", NITRO_ROOT_PEM, NITRO_ROOT_SHA256)
    }
}

#[cfg(test)]
mod pin_tests {
    #[test]
    fn nvidia_and_aws_pins_match() {
        assert!(super::nvidia::device_identity_ca().is_some());
        assert!(super::aws::nitro_root().is_some());
    }
}
