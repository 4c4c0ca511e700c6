//! Moving a broker's state between stores (`veil broker export` /
//! `import`), e.g. from the embedded store to PostgreSQL when a single
//! broker becomes several replicas.
//!
//! The export is JSON lines: a header
//! `{"format":"veil-store-export","version":1}` and one
//! `{"ns":…,"key":…,"value":<base64>}` per record. Records are copied as
//! stored: resources and the token signing key stay sealed under the KEK
//! (the target broker must use the same KEK). Sessions are not exported;
//! guests attest again.
//!
//! Import is all-or-nothing in its checks: the whole file is parsed
//! strictly, every sealed record is opened with the target's KEK, and
//! conflicts with records already in the target are reported, before
//! anything is written.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ALL_NAMESPACES, Namespace, Store};
use crate::secrets::Kek;

const FORMAT: &str = "veil-store-export";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    ns: String,
    key: String,
    value: String,
}

/// Counts of an export or import.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Records written (import) or exported.
    pub written: usize,
    /// Records already present with the same value (import).
    pub unchanged: usize,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Whether records of `ns` are sealed under the KEK.
fn sealed(ns: Namespace) -> bool {
    matches!(ns, Namespace::Resources | Namespace::Meta)
}

/// Writes every durable record of `store` to `out`.
pub async fn export(store: &dyn Store, out: &mut dyn Write) -> Result<Stats, String> {
    let io = |e: std::io::Error| format!("writing the export: {e}");
    let header = serde_json::to_string(&Header {
        format: FORMAT.into(),
        version: VERSION,
    })
    .map_err(|e| e.to_string())?;
    writeln!(out, "{header}").map_err(io)?;
    let mut stats = Stats::default();
    for ns in ALL_NAMESPACES {
        if ns == Namespace::Sessions {
            continue;
        }
        for (key, value) in store.scan(ns).await.map_err(|e| e.to_string())? {
            let line = serde_json::to_string(&Record {
                ns: ns.name().into(),
                key,
                value: b64().encode(value),
            })
            .map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(io)?;
            stats.written = stats.written.saturating_add(1);
        }
    }
    out.flush().map_err(io)?;
    Ok(stats)
}

/// Parses an export strictly.
fn parse(input: &mut dyn BufRead) -> Result<Vec<(Namespace, String, Vec<u8>)>, String> {
    let mut lines = input.lines();
    let first = lines
        .next()
        .ok_or("empty input: not a Veil store export")?
        .map_err(|e| format!("reading line 1: {e}"))?;
    let header: Header = serde_json::from_str(&first)
        .map_err(|_| "line 1: not a Veil store export header".to_string())?;
    if header.format != FORMAT {
        return Err(format!(
            "line 1: format {:?} is not {FORMAT:?}",
            header.format
        ));
    }
    if header.version != VERSION {
        return Err(format!(
            "line 1: export version {} is not supported (this broker reads {VERSION})",
            header.version
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let n = i.saturating_add(2);
        let line = line.map_err(|e| format!("reading line {n}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line)
            .map_err(|_| format!("line {n}: not a record {{ns, key, value}}"))?;
        let ns = Namespace::from_name(&r.ns)
            .filter(|ns| *ns != Namespace::Sessions)
            .ok_or_else(|| format!("line {n}: unknown namespace {:?}", r.ns))?;
        if r.key.is_empty() {
            return Err(format!("line {n}: empty key"));
        }
        let value = b64()
            .decode(&r.value)
            .map_err(|_| format!("line {n}: value is not base64"))?;
        if !seen.insert((r.ns.clone(), r.key.clone())) {
            return Err(format!("line {n}: duplicate record {}/{}", r.ns, r.key));
        }
        out.push((ns, r.key, value));
    }
    Ok(out)
}

/// Imports an export into `store`. Checks everything first (format, every
/// sealed record opens under `kek`, conflicts unless `overwrite`), then
/// writes; each write is durable when it returns.
pub async fn import(
    store: &dyn Store,
    kek: &Kek,
    input: &mut dyn BufRead,
    overwrite: bool,
) -> Result<Stats, String> {
    let records = parse(input)?;
    for (ns, key, value) in &records {
        if sealed(*ns) {
            kek.open(&format!("{}/{key}", ns.name()), value).map_err(|_| {
                format!(
                    "{}/{key} does not open with this broker's key-encryption key: import with the KEK of the exporting broker (kek_file or VEIL_KEK)",
                    ns.name()
                )
            })?;
        }
    }
    let mut stats = Stats::default();
    let mut todo = Vec::new();
    let mut conflicts = Vec::new();
    for (ns, key, value) in records {
        match store.get(ns, &key).await.map_err(|e| e.to_string())? {
            Some(v) if v == value => stats.unchanged = stats.unchanged.saturating_add(1),
            Some(_) if !overwrite => conflicts.push(format!("{}/{key}", ns.name())),
            _ => todo.push((ns, key, value)),
        }
    }
    if !conflicts.is_empty() {
        return Err(format!(
            "{} record(s) already exist with other values (nothing was written; --overwrite replaces them): {}",
            conflicts.len(),
            conflicts.join(", ")
        ));
    }
    for (ns, key, value) in todo {
        store
            .put(ns, &key, value)
            .await
            .map_err(|e| format!("writing {}/{key}: {e}", ns.name()))?;
        stats.written = stats.written.saturating_add(1);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn round_trip_and_refusals() {
        let kek = Kek::from_bytes(&[7; 32]).unwrap();
        let a_dir = tempfile::tempdir().unwrap();
        let a = EmbeddedStore::open(a_dir.path()).unwrap();
        let sealed = kek.seal("resources/default/key/1", b"secret").unwrap();
        a.put(Namespace::Resources, "default/key/1", sealed.clone())
            .await
            .unwrap();
        a.put(
            Namespace::Policies,
            "resource-policy",
            b"package policy".to_vec(),
        )
        .await
        .unwrap();
        a.put_expiring(Namespace::Sessions, "s", b"x".to_vec(), 1)
            .await
            .unwrap();
        let mut buf = Vec::new();
        assert_eq!(export(&a, &mut buf).await.unwrap().written, 2);
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(!text.contains("secret"));
        assert!(!text.contains("sessions"));

        let b_dir = tempfile::tempdir().unwrap();
        let b = EmbeddedStore::open(b_dir.path()).unwrap();
        // The wrong KEK: nothing is written.
        let other = Kek::from_bytes(&[8; 32]).unwrap();
        let e = import(&b, &other, &mut buf.as_slice(), false)
            .await
            .unwrap_err();
        assert!(e.contains("key-encryption key"), "{e}");
        assert!(b.list(Namespace::Policies).await.unwrap().is_empty());
        let s = import(&b, &kek, &mut buf.as_slice(), false).await.unwrap();
        assert_eq!(s.written, 2);
        let got = b
            .get(Namespace::Resources, "default/key/1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            kek.open("resources/default/key/1", &got).unwrap(),
            b"secret"
        );
        // Again: unchanged. A conflicting value: refused unless overwrite.
        let s = import(&b, &kek, &mut buf.as_slice(), false).await.unwrap();
        assert_eq!(
            s,
            Stats {
                written: 0,
                unchanged: 2
            }
        );
        b.put(Namespace::Policies, "resource-policy", b"other".to_vec())
            .await
            .unwrap();
        assert!(
            import(&b, &kek, &mut buf.as_slice(), false)
                .await
                .unwrap_err()
                .contains("resource-policy")
        );
        let s = import(&b, &kek, &mut buf.as_slice(), true).await.unwrap();
        assert_eq!(s.written, 1);
    }

    #[test]
    fn strict_parsing() {
        let bad: &[&str] = &[
            "",
            "{}\n",
            "{\"format\":\"other\",\"version\":1}\n",
            "{\"format\":\"veil-store-export\",\"version\":2}\n",
            "{\"format\":\"veil-store-export\",\"version\":1}\n{\"ns\":\"sessions\",\"key\":\"a\",\"value\":\"\"}\n",
            "{\"format\":\"veil-store-export\",\"version\":1}\n{\"ns\":\"policies\",\"key\":\"a\",\"value\":\"!!\"}\n",
            "{\"format\":\"veil-store-export\",\"version\":1}\n{\"ns\":\"policies\",\"key\":\"a\",\"value\":\"\",\"x\":1}\n",
            "{\"format\":\"veil-store-export\",\"version\":1}\n{\"ns\":\"policies\",\"key\":\"a\",\"value\":\"\"}\n{\"ns\":\"policies\",\"key\":\"a\",\"value\":\"\"}\n",
        ];
        for b in bad {
            assert!(parse(&mut b.as_bytes()).is_err(), "{b:?}");
        }
        let ok = "{\"format\":\"veil-store-export\",\"version\":1}\n{\"ns\":\"policies\",\"key\":\"a\",\"value\":\"eA==\"}\n";
        assert_eq!(
            parse(&mut ok.as_bytes()).unwrap(),
            vec![(Namespace::Policies, "a".to_string(), b"x".to_vec())]
        );
    }
}
