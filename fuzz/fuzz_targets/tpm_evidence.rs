//! TPM and vTPM evidence from outside: TPMS_ATTEST, TPMT_SIGNATURE,
//! TPMT_PUBLIC, the CoCo `tpm` JSON, Azure's HCL report and az-vtpm JSON,
//! and the go-tpm-tools Attestation protobuf.
#![no_main]

use veil_evidence::azure::{AzEvidence, HclReport};
use veil_evidence::gce::GceAttestation;
use veil_evidence::tpm::{Public, Quote, Signature, TpmEvidence};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = Quote::parse(data);
    let _ = Signature::parse(data);
    let _ = Public::parse(data);
    let _ = TpmEvidence::parse_json(data);
    let _ = AzEvidence::parse_json(data);
    let _ = GceAttestation::parse(data);
    // The HCL report is fixed-size: pad or cut the input to 2600 bytes.
    let mut hcl = data.to_vec();
    hcl.resize(veil_evidence::azure::HCL_REPORT_LEN, 0);
    let _ = HclReport::parse(&hcl);
});
