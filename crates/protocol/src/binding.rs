//! The report-data binding of the KBS protocol:
//!
//! ```text
//! primary_rd = SHA-384( JCS({"additional-evidence": AE, "nonce": N, "tee-pubkey": K}) )
//! device_rd  = SHA-384( JCS({"nonce": N, "tee-pubkey": K}) )
//! ```
//! with JCS the RFC 8785 canonical JSON, AE the additional-evidence string
//! exactly as sent (`""` when none). The 48-byte digest fills the start of a
//! TEE's 64-byte report-data field; the rest must be zero. Veil compares the
//! whole field exactly ([`expected_report_data`]), never padding or
//! truncating the evidence to make a match.

use serde_json::{Value, json};

/// Canonical JSON (RFC 8785) of a value.
pub fn jcs(value: &Value) -> Result<String, String> {
    serde_json_canonicalizer::to_string(value).map_err(|e| e.to_string())
}

fn sha384(data: &[u8]) -> [u8; 48] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, data);
    let mut out = [0u8; 48];
    out.copy_from_slice(d.as_ref());
    out
}

/// The digest the primary evidence must carry.
pub fn primary_digest(
    nonce: &str,
    tee_pubkey: &Value,
    additional_evidence: &str,
) -> Result<[u8; 48], String> {
    let v = json!({"additional-evidence": additional_evidence, "nonce": nonce, "tee-pubkey": tee_pubkey});
    Ok(sha384(jcs(&v)?.as_bytes()))
}

/// The digest each additional (device) evidence must carry.
pub fn device_digest(nonce: &str, tee_pubkey: &Value) -> Result<[u8; 48], String> {
    let v = json!({"nonce": nonce, "tee-pubkey": tee_pubkey});
    Ok(sha384(jcs(&v)?.as_bytes()))
}

/// The exact 64-byte report-data field a TEE must report for a digest:
/// the digest followed by zeros.
pub fn expected_report_data(digest: &[u8; 48]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..48].copy_from_slice(digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector from guest-components' client (reference notes §1.2): an
    /// independent implementation produced this digest for this input.
    #[test]
    fn coco_client_vector() {
        let pubkey = json!({"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC",
            "x":"X206oNMnwTcCUT1CmfKXqxgvz2cPlikfqxlXLnpuAcQ",
            "y":"v-tDpOfLaJTJPbCNViCbupJgVCSFlgJT68VUjh579Qk"});
        let nonce = "Zm9vYmFyMTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=";
        let canonical =
            jcs(&json!({"additional-evidence":"","nonce":nonce,"tee-pubkey":pubkey})).unwrap();
        assert_eq!(
            canonical,
            r#"{"additional-evidence":"","nonce":"Zm9vYmFyMTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"X206oNMnwTcCUT1CmfKXqxgvz2cPlikfqxlXLnpuAcQ","y":"v-tDpOfLaJTJPbCNViCbupJgVCSFlgJT68VUjh579Qk"}}"#
        );
        let d = primary_digest(nonce, &pubkey, "").unwrap();
        assert_eq!(
            hex::encode(d),
            "da7e781a2f7fbaf1e2cdc4909924ad1542836bf2c71bc5d5613bf2c8ba2d215c9d9795d60c10f4561793b88e315fec71"
        );
        // The same digest as the CoCo sample attester's base64 report_data.
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(d),
            "2n54Gi9/uvHizcSQmSStFUKDa/LHG8XVYTvyyLotIVydl5XWDBD0VheTuI4xX+xx"
        );
    }

    /// JCS orders keys by UTF-16 code units and formats numbers canonically
    /// (Trustee's attestation-service unit-test vector).
    #[test]
    fn jcs_vector() {
        let c = jcs(&json!({"b":1,"a":"test","c":{"d":"e"}})).unwrap();
        assert_eq!(c, r#"{"a":"test","b":1,"c":{"d":"e"}}"#);
        assert!(hex::encode(sha384(c.as_bytes())).starts_with("e71ce8e70d814ba6"));
        assert_eq!(jcs(&json!({"n": 1.0e2})).unwrap(), r#"{"n":100}"#);
    }

    #[test]
    fn report_data_layout() {
        let d = [7u8; 48];
        let rd = expected_report_data(&d);
        assert_eq!(&rd[..48], &d);
        assert_eq!(&rd[48..], &[0u8; 16]);
        let with_ae = primary_digest("n", &json!({}), "{\"nvidia\":{}}").unwrap();
        assert_ne!(with_ae, primary_digest("n", &json!({}), "").unwrap());
        assert_ne!(
            device_digest("n", &json!({})).unwrap(),
            primary_digest("n", &json!({}), "").unwrap()
        );
    }
}
