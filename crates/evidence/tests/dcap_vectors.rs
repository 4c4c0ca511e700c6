//! DCAP quotes captured on real Intel hardware: every one parses, with the
//! fields and policy findings its manifest records; structural damage is
//! refused without panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use veil_evidence::dcap::{Body, INTEL_QE_VENDOR_ID, Quote, TeeType, parse_evidence};
use veil_testkit::{read, vectors};

const QUOTES: [&str; 11] = [
    "tdx/dcap-qvl/tdx_quote",
    "tdx/dcap-qvl/near_quote_hex.txt",
    "tdx/dcap-qvl/tdx_quote_outdated",
    "tdx/dcap-qvl/quote-from-tappd.hex",
    "tdx/dcap-qvl/tdx-quote.hex",
    "tdx/trustee/tdx_quote_4.dat",
    "tdx/trustee/tdx_quote_5.dat",
    "tdx/trustee/tdx_quote_6.dat",
    "azure-cvm/trustee-az-tdx-vtpm/td-quote.bin",
    "sgx/dcap-qvl/sgx_quote",
    "sgx/trustee/occlum_quote.dat",
];

#[test]
fn every_vector_quote_parses() {
    let Some(dir) = vectors() else { return };
    for f in QUOTES {
        let (q, _) = parse_evidence(&read(&dir, f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(q.header.qe_vendor_id, INTEL_QE_VENDOR_ID, "{f}");
        assert!(
            q.certification
                .pck_chain_pem
                .starts_with(b"-----BEGIN CERTIFICATE-----"),
            "{f}"
        );
        assert_eq!(
            q.signed_bytes().len(),
            48 + match (&q.body, q.header.version) {
                (Body::Sgx(_), _) => 384,
                (Body::Td10(_), 5) => 6 + 584,
                (Body::Td10(_), _) => 584,
                (Body::Td15(_), _) => 6 + 648,
            },
            "{f}"
        );
        let expect_tee = if f.starts_with("sgx") {
            TeeType::Sgx
        } else {
            TeeType::Tdx
        };
        assert_eq!(q.header.tee_type, expect_tee, "{f}");
    }
}

#[test]
fn fields_and_policy_findings() {
    let Some(dir) = vectors() else { return };
    let (q, _) = parse_evidence(&read(&dir, "tdx/dcap-qvl/tdx_quote")).unwrap();
    let Body::Td10(td) = &q.body else {
        panic!("v4 TD 1.0")
    };
    assert!(hex::encode(td.mr_td).starts_with("91eb2b44"));
    assert!(hex::encode(td.mr_td).ends_with("3118b7"));
    assert!(hex::encode(td.report_data).starts_with("9a9d48e7"));
    assert_eq!(q.trailing_zeros(), 70);
    // v5 with a TD 1.5 body; MRSERVICETD non-zero (a policy finding).
    let (q, _) = parse_evidence(&read(&dir, "tdx/trustee/tdx_quote_5.dat")).unwrap();
    assert_eq!(q.header.version, 5);
    let Body::Td15(td) = &q.body else {
        panic!("TD 1.5")
    };
    assert!(td.mr_servicetd.unwrap().iter().any(|b| *b != 0));
    assert!(td.tee_tcb_svn2.is_some());
    // Debug TD.
    let (q, _) = parse_evidence(&read(&dir, "tdx/trustee/tdx_quote_4.dat")).unwrap();
    let Body::Td10(td) = &q.body else { panic!() };
    assert!(td.debug());
    // SEPT_VE_DISABLE off (Azure TDX).
    let (q, _) = parse_evidence(&read(&dir, "azure-cvm/trustee-az-tdx-vtpm/td-quote.bin")).unwrap();
    let Body::Td10(td) = &q.body else { panic!() };
    assert!(!td.sept_ve_disable());
    // SGX: Occlum's debug enclave, report_data "test".
    let (q, _) = parse_evidence(&read(&dir, "sgx/trustee/occlum_quote.dat")).unwrap();
    let Body::Sgx(r) = &q.body else { panic!() };
    assert!(r.debug());
    assert!(hex::encode(r.mr_enclave).starts_with("8f173e46"));
    assert_eq!(&r.report_data[..4], b"test");
    let (q, _) = parse_evidence(&read(&dir, "sgx/dcap-qvl/sgx_quote")).unwrap();
    assert_eq!(q.header.version, 3);
}

#[test]
fn coco_json_and_hex_forms_are_identical() {
    use base64::Engine as _;
    let Some(dir) = vectors() else { return };
    let raw = read(&dir, "tdx/dcap-qvl/tdx_quote");
    let json = serde_json::json!({"cc_eventlog": base64::engine::general_purpose::STANDARD.encode(b"log"),
        "quote": base64::engine::general_purpose::STANDARD.encode(&raw)});
    let (a, log) = parse_evidence(json.to_string().as_bytes()).unwrap();
    assert_eq!(log.as_deref(), Some(&b"log"[..]));
    let (b, _) = parse_evidence(hex::encode(&raw).as_bytes()).unwrap();
    let (c, _) = parse_evidence(format!("0x{}\n", hex::encode(&raw)).as_bytes()).unwrap();
    let d = Quote::parse(&raw).unwrap();
    assert_eq!(a, d);
    assert_eq!(b, d);
    assert_eq!(c, d);
}

#[test]
fn structural_damage_is_refused() {
    let Some(dir) = vectors() else { return };
    for f in [
        "tdx/trustee/tdx_quote_5.dat",
        "sgx/dcap-qvl/sgx_quote",
        "tdx/trustee/tdx_quote_4.dat",
    ] {
        let raw = read(&dir, f);
        let q = Quote::parse(&raw).unwrap();
        let len = q.as_bytes().len();
        // Truncation anywhere inside the quote.
        for cut in [1, 10, 47, 48, 100, 500, len - 1] {
            assert!(
                Quote::parse(&raw[..cut.min(len - 1)]).is_err(),
                "{f} cut {cut}"
            );
        }
        // A non-zero byte after the quote.
        let mut extra = q.as_bytes().to_vec();
        extra.push(1);
        assert!(Quote::parse(&extra).is_err());
        // Unknown version, key type, TEE type.
        for (off, val) in [(0usize, 6u8), (2, 3), (4, 0x82)] {
            let mut b = raw.clone();
            b[off] = val;
            assert!(Quote::parse(&b).is_err(), "{f} byte {off}");
        }
        // Signature-data length off by one.
        let sig_len_off = q.signed_bytes().len();
        let mut b = raw.clone();
        b[sig_len_off] = b[sig_len_off].wrapping_add(1);
        assert!(Quote::parse(&b).is_err(), "{f} sig len");
    }
}
