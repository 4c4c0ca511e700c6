//! Loading certificates and CRLs from DER or PEM bytes, as users hand them in.

use der::pem::PemLabel;

use crate::EndorsementError;

/// What a blob of bytes contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    /// A DER X.509 certificate.
    Certificate(Vec<u8>),
    /// A DER X.509 CRL.
    Crl(Vec<u8>),
}

/// Splits DER or PEM input (a PEM file may hold many blocks) into DER
/// certificates and CRLs. Anything else is an error: a file the user named
/// that contains nothing usable is never silently ignored.
pub fn decode_blobs(what: &str, bytes: &[u8]) -> Result<Vec<Blob>, EndorsementError> {
    let text_start = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if text_start == Some(&b'-') {
        let text = std::str::from_utf8(bytes).map_err(|e| EndorsementError::Decode {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        return decode_pem_blocks(what, text);
    }
    // DER: a certificate or a CRL, told apart by decoding.
    use der::Decode;
    if x509_cert::Certificate::from_der(bytes).is_ok() {
        return Ok(vec![Blob::Certificate(bytes.to_vec())]);
    }
    if <x509_cert::crl::CertificateList>::from_der(bytes).is_ok() {
        return Ok(vec![Blob::Crl(bytes.to_vec())]);
    }
    Err(EndorsementError::Decode {
        what: what.to_string(),
        reason: "neither a DER certificate nor a DER CRL".into(),
    })
}

fn decode_pem_blocks(what: &str, text: &str) -> Result<Vec<Blob>, EndorsementError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block_and_more = rest.get(start..).unwrap_or("");
        let Some(end_marker) = block_and_more.find("-----END ") else {
            break;
        };
        let after_end = block_and_more.get(end_marker..).unwrap_or("");
        let close = after_end
            .get(9..)
            .and_then(|s| s.find("-----"))
            .map(|i| end_marker + 9 + i + 5)
            .ok_or_else(|| EndorsementError::Decode {
                what: what.to_string(),
                reason: "unterminated PEM block".into(),
            })?;
        let block = block_and_more.get(..close).unwrap_or("");
        let (label, der) =
            der::pem::decode_vec(block.as_bytes()).map_err(|e| EndorsementError::Decode {
                what: what.to_string(),
                reason: e.to_string(),
            })?;
        if label == x509_cert::Certificate::PEM_LABEL {
            out.push(Blob::Certificate(der));
        } else if label == "X509 CRL" {
            out.push(Blob::Crl(der));
        } else {
            return Err(EndorsementError::Decode {
                what: what.to_string(),
                reason: format!("unexpected PEM block {label:?}"),
            });
        }
        rest = block_and_more.get(close..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(EndorsementError::Decode {
            what: what.to_string(),
            reason: "no PEM blocks found".into(),
        });
    }
    Ok(out)
}

/// Reads files as `(name, bytes)`, for builders that take file contents.
pub fn read_files(paths: &[std::path::PathBuf]) -> Result<Vec<(String, Vec<u8>)>, String> {
    paths
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map(|b| (p.display().to_string(), b))
                .map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

/// Every certificate (DER) in the given DER or PEM files; a CRL is an
/// error (the callers want trust anchors or chains).
pub fn read_certificates(paths: &[std::path::PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for (name, bytes) in read_files(paths)? {
        for blob in decode_blobs(&name, &bytes).map_err(|e| e.to_string())? {
            match blob {
                Blob::Certificate(der) => out.push(der),
                Blob::Crl(_) => {
                    return Err(format!("{name}: a CRL where certificates were expected"));
                }
            }
        }
    }
    Ok(out)
}

/// Encodes DER as PEM.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_embedded_bundle() {
        let blobs = decode_blobs("milan", crate::roots::amd::MILAN_PEM.as_bytes()).unwrap();
        assert_eq!(blobs.len(), 3);
        assert!(blobs.iter().all(|b| matches!(b, Blob::Certificate(_))));
        let Blob::Certificate(der) = &blobs[0] else {
            unreachable!()
        };
        assert_eq!(decode_blobs("der", der).unwrap(), vec![blobs[0].clone()]);
        let pem = to_pem("CERTIFICATE", der);
        assert_eq!(
            decode_blobs("pem", pem.as_bytes()).unwrap(),
            vec![blobs[0].clone()]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_blobs("x", b"hello").is_err());
        assert!(decode_blobs("x", b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n").is_err());
        assert!(decode_blobs("x", b"-----BEGIN CERTIFICATE-----\nAAAA").is_err());
        assert!(decode_blobs("x", b"").is_err());
    }
}
