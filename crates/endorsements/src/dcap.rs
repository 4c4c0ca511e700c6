//! Intel DCAP collateral for one quote: PCK CRL and its issuer chain, root
//! CA CRL, TCB info and QE identity (the signed JSON kept as the exact text
//! that was signed) with their signatures and issuer chains. The JSON shape
//! is the common `QuoteCollateralV3` (as served assembled by PCCS clients
//! and dcap-qvl): CRLs as hex DER, signatures as hex `r ‖ s`.

use serde::{Deserialize, Serialize};

use crate::EndorsementError;

/// Collateral as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collateral {
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: String,
    pub pck_crl: String,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: String,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: String,
}

impl Collateral {
    /// Parses the JSON document.
    pub fn parse(bytes: &[u8]) -> Result<Self, EndorsementError> {
        serde_json::from_slice(bytes)
            .map_err(|e| EndorsementError::Bundle(format!("DCAP collateral: {e}")))
    }
}
