//! Init-data: the TOML document (`version`, `algorithm`, `data`) whose
//! digest the hardware measured at launch (SNP HOST_DATA, TDX MRCONFIGID).
//! The agent checks it before sending it, so a mismatched document fails in
//! the guest with a clear message instead of at the broker.

use veil_protocol::types::InitData;

/// A parsed init-data document.
#[derive(Debug, Clone)]
pub struct InitDataDoc {
    pub text: String,
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl InitDataDoc {
    /// Parses the TOML and digests its raw bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e| format!("init-data is not valid TOML: {e}"))?;
        let version = doc
            .get("version")
            .and_then(toml::Value::as_str)
            .ok_or("init-data has no version")?;
        if version != "0.1.0" {
            return Err(format!(
                "init-data version {version:?} is not supported (0.1.0)"
            ));
        }
        let algorithm = doc
            .get("algorithm")
            .and_then(toml::Value::as_str)
            .ok_or("init-data has no algorithm")?
            .to_string();
        let alg = match algorithm.as_str() {
            "sha256" => &aws_lc_rs::digest::SHA256,
            "sha384" => &aws_lc_rs::digest::SHA384,
            "sha512" => &aws_lc_rs::digest::SHA512,
            other => return Err(format!("init-data algorithm {other:?} is not supported")),
        };
        let digest = aws_lc_rs::digest::digest(alg, text.as_bytes())
            .as_ref()
            .to_vec();
        Ok(InitDataDoc {
            text: text.to_string(),
            algorithm,
            digest,
        })
    }

    /// Checks the digest against the launch-measured field, exactly.
    pub fn check(&self, measured: &[u8]) -> Result<(), String> {
        if measured != self.digest.as_slice() {
            return Err(format!(
                "init-data digest ({}) {} does not equal what the hardware measured at launch {}",
                self.algorithm,
                hex::encode(&self.digest),
                hex::encode(measured)
            ));
        }
        Ok(())
    }

    /// The protocol form.
    pub fn wire(&self) -> InitData {
        InitData {
            format: "toml".into(),
            body: self.text.clone(),
        }
    }
}
