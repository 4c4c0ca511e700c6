//! The parse error shared by every evidence parser.

use thiserror::Error;

/// Why a piece of evidence could not be parsed. Small and precise, in the
/// manner of rustls' `InvalidMessage`: each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input has the wrong total length for a fixed-size structure.
    #[error("{what} must be exactly {expected} bytes, got {actual}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The input ended inside a field.
    #[error("truncated input: {field} needs {needed} bytes at offset {offset:#x}")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
    },
    /// Bytes were left over after a complete structure.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, count: usize },
    /// A reserved field (or reserved bits) is not zero.
    #[error("reserved field {field} at offset {offset:#x} is not zero")]
    ReservedNonZero { field: &'static str, offset: usize },
    /// A structure version that this parser does not know.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u32 },
    /// A signature algorithm that this parser does not know.
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignatureAlgorithm(u32),
    /// A field holds a value outside its defined range.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// JSON evidence that does not have the expected shape.
    #[error("malformed evidence JSON: {0}")]
    Json(String),
}
