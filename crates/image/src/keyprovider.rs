//! The ocicrypt key-provider protocol (the `cmd` transport: one JSON
//! request on stdin, one JSON answer on stdout).
//!
//! * wrap: `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"<provider>":["<b64 of keypath=…::keyid=…>"]},…},"optsdata":<private options>}}`
//!   → `{"keywrapresults":{"annotation":<packet JSON bytes>}}`
//! * unwrap: `{"op":"keyunwrap","keyunwrapparams":{"dc":…,"annotation":<packet JSON bytes>}}`
//!   → `{"keyunwrapresults":{"optsdata":<private options JSON bytes>}}`
//!
//! Byte fields are Go `[]byte`: Go writes base64 strings, ocicrypt-rs
//! writes arrays of numbers, and ocicrypt-rs cannot read Go's form. [`Bytes`]
//! reads both and writes arrays (which Go reads too).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::packet::AnnotationPacket;
use crate::{ImageError, b64, malformed};

/// A Go `[]byte` field: base64 string or array of numbers in, array out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Array(Vec<u8>),
        }
        match Either::deserialize(d)? {
            Either::Array(a) => Ok(Bytes(a)),
            Either::Text(t) => b64().decode(t.as_bytes()).map(Bytes).map_err(|_| {
                serde::de::Error::custom("a byte field is neither base64 nor an array")
            }),
        }
    }
}

/// `Parameters` maps of the encrypt and decrypt configurations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(rename = "Parameters", default)]
    pub parameters: BTreeMap<String, Vec<Bytes>>,
    #[serde(
        rename = "DecryptConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub decrypt_config: Option<Box<Config>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrapParams {
    #[serde(default)]
    pub ec: Option<Config>,
    #[serde(default)]
    pub optsdata: Option<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUnwrapParams {
    #[serde(default)]
    pub dc: Option<Config>,
    #[serde(default)]
    pub annotation: Option<Bytes>,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub keywrapparams: Option<KeyWrapParams>,
    #[serde(default)]
    pub keyunwrapparams: Option<KeyUnwrapParams>,
}

/// What a request asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Wrap `optsdata` for each recipient spec given to `provider`.
    Wrap {
        specs: Vec<WrapSpec>,
        optsdata: Vec<u8>,
    },
    /// Unwrap this packet.
    Unwrap(Box<AnnotationPacket>),
}

/// A recipient of `--encryption-key provider:<name>:keypath=…::keyid=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrapSpec {
    /// A file holding the 32-byte key-encryption key.
    pub keypath: String,
    /// The broker resource that holds the same key (`kbs:///…`).
    pub keyid: String,
}

impl WrapSpec {
    /// Parses `keypath=…::keyid=…[::algorithm=A256GCM]`.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let (mut keypath, mut keyid) = (None, None);
        for part in s.split("::") {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                malformed(
                    "encryption key parameters",
                    format!("{part:?} is not key=value"),
                )
            })?;
            match k {
                "keypath" => keypath = Some(v.to_string()),
                "keyid" => keyid = Some(v.to_string()),
                "algorithm" if v == "A256GCM" => {}
                "algorithm" => {
                    return Err(ImageError::Unsupported {
                        what: "wrap algorithm",
                        value: v.to_string(),
                    });
                }
                other => {
                    return Err(malformed(
                        "encryption key parameters",
                        format!("unknown parameter {other:?} (keypath, keyid, algorithm)"),
                    ));
                }
            }
        }
        let spec = WrapSpec {
            keypath: keypath
                .ok_or_else(|| malformed("encryption key parameters", "keypath= is required"))?,
            keyid: keyid
                .ok_or_else(|| malformed("encryption key parameters", "keyid= is required"))?,
        };
        crate::packet::resource_path(&spec.keyid)?;
        Ok(spec)
    }
}

impl Request {
    /// Parses and checks a request for `provider` (the name under which
    /// ocicrypt was configured to call this key provider).
    pub fn parse(json: &[u8], provider: &str) -> Result<Op, ImageError> {
        let r: Request =
            serde_json::from_slice(json).map_err(|e| malformed("key-provider request", e))?;
        match r.op.as_str() {
            "keywrap" => {
                let p = r.keywrapparams.ok_or_else(|| {
                    malformed("key-provider request", "keywrap without keywrapparams")
                })?;
                let optsdata = p
                    .optsdata
                    .ok_or_else(|| malformed("key-provider request", "keywrap without optsdata"))?
                    .0;
                let params = p.ec.map(|c| c.parameters).unwrap_or_default();
                let specs = params
                    .get(provider)
                    .ok_or_else(|| {
                        malformed(
                            "key-provider request",
                            format!("no parameters for provider {provider:?}"),
                        )
                    })?
                    .iter()
                    .map(|b| {
                        let text = std::str::from_utf8(&b.0)
                            .map_err(|_| malformed("encryption key parameters", "not UTF-8"))?;
                        WrapSpec::parse(text)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if specs.is_empty() {
                    return Err(malformed("key-provider request", "no recipients"));
                }
                Ok(Op::Wrap { specs, optsdata })
            }
            "keyunwrap" => {
                let p = r.keyunwrapparams.ok_or_else(|| {
                    malformed("key-provider request", "keyunwrap without keyunwrapparams")
                })?;
                let a = p.annotation.ok_or_else(|| {
                    malformed("key-provider request", "keyunwrap without annotation")
                })?;
                Ok(Op::Unwrap(Box::new(AnnotationPacket::from_json(&a.0)?)))
            }
            other => Err(ImageError::Unsupported {
                what: "key-provider operation",
                value: other.to_string(),
            }),
        }
    }
}

/// The answer to a wrap.
pub fn wrap_response(packet_json: Vec<u8>) -> serde_json::Value {
    serde_json::json!({"keywrapresults": {"annotation": Bytes(packet_json)}})
}

/// The answer to an unwrap.
pub fn unwrap_response(optsdata: Vec<u8>) -> serde_json::Value {
    serde_json::json!({"keyunwrapresults": {"optsdata": Bytes(optsdata)}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_requests_in_both_byte_encodings() {
        let spec =
            b64().encode("keypath=/k/kek.bin::keyid=kbs:///default/key/1::algorithm=A256GCM");
        let opts = b"{\"symkey\":\"x\"}";
        for optsdata in [
            serde_json::Value::String(b64().encode(opts)),
            serde_json::to_value(opts.to_vec()).unwrap(),
        ] {
            let req = serde_json::json!({"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"veil":[spec]},"DecryptConfig":{"Parameters":{}}},"optsdata":optsdata},"keyunwrapparams":{}});
            let op = Request::parse(req.to_string().as_bytes(), "veil").unwrap();
            assert_eq!(
                op,
                Op::Wrap {
                    specs: vec![WrapSpec {
                        keypath: "/k/kek.bin".into(),
                        keyid: "kbs:///default/key/1".into()
                    }],
                    optsdata: opts.to_vec()
                }
            );
            assert!(Request::parse(req.to_string().as_bytes(), "other").is_err());
        }
    }

    #[test]
    fn unwrap_requests_and_answers() {
        let packet = br#"{"kid":"kbs:///default/key/1","wrapped_data":"AA==","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}"#;
        for annotation in [
            serde_json::Value::String(b64().encode(packet)),
            serde_json::to_value(packet.to_vec()).unwrap(),
        ] {
            let req = serde_json::json!({"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{"veil":[]}},"annotation":annotation}});
            let Op::Unwrap(p) = Request::parse(req.to_string().as_bytes(), "veil").unwrap() else {
                panic!("not an unwrap")
            };
            assert_eq!(p.kid, "kbs:///default/key/1");
        }
        assert_eq!(
            unwrap_response(b"{}".to_vec()).to_string(),
            r#"{"keyunwrapresults":{"optsdata":[123,125]}}"#
        );
        assert_eq!(
            wrap_response(b"{}".to_vec()).to_string(),
            r#"{"keywrapresults":{"annotation":[123,125]}}"#
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            r#"{"op":"keyencrypt"}"#,
            r#"{"op":"keywrap"}"#,
            r#"{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"veil":[]}},"optsdata":[1]}}"#,
            r#"{"op":"keyunwrap","keyunwrapparams":{}}"#,
            r#"{"op":"keyunwrap","keyunwrapparams":{"annotation":"!!"}}"#,
            r#"{"op":"keyunwrap","keyunwrapparams":{"annotation":[300]}}"#,
            "not json",
        ] {
            assert!(Request::parse(bad.as_bytes(), "veil").is_err(), "{bad}");
        }
        for spec in [
            "keypath=/k",
            "keyid=kbs:///default/key/1",
            "keypath=/k::keyid=kbs:///default/key/1::algorithm=A256CTR",
            "keypath=/k::keyid=kbs:///default/key/1::sample=true",
            "keypath=/k::keyid=https://x/default/key/1",
            "keypath",
        ] {
            assert!(WrapSpec::parse(spec).is_err(), "{spec}");
        }
    }
}
