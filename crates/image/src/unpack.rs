//! Unpacking a layer in one pass: (decrypt →) decompress → untar, while
//! hashing the uncompressed tar stream for the layer's `diff_id`. The
//! files go to a private staging directory that is renamed into place only
//! when every check has passed (the layer's HMAC and digest for encrypted
//! layers, the `diff_id` always); on any failure the staging directory is
//! removed and nothing appears at the destination.
//!
//! Each layer is unpacked into its own directory, as a snapshotter keeps
//! layers (whiteout files `.wh.*` are kept as they are, for the overlay
//! that stacks the layers). Entries may not escape the directory (`..`,
//! absolute paths and writes through symlinks are refused by the `tar`
//! crate's `unpack_in`); device nodes are skipped.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use aws_lc_rs::digest;

use crate::layer::{self, PrivateOptions, PublicOptions, Stage};
use crate::{ImageError, malformed};

/// How a layer blob is compressed (from its media type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a (plaintext) OCI layer media type.
    pub fn from_media_type(media: &str) -> Result<Self, ImageError> {
        let base = media.strip_suffix("+encrypted").unwrap_or(media);
        if base.ends_with(".tar") {
            Ok(Compression::None)
        } else if base.ends_with(".tar+gzip")
            || base == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        {
            Ok(Compression::Gzip)
        } else if base.ends_with(".tar+zstd") {
            Ok(Compression::Zstd)
        } else {
            Err(ImageError::Unsupported {
                what: "layer media type",
                value: media.to_string(),
            })
        }
    }
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    ctx: digest::Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

fn io(e: std::io::Error) -> ImageError {
    ImageError::Io(e.to_string())
}

fn staging_path(dest: &Path) -> Result<PathBuf, ImageError> {
    if dest.exists() {
        return Err(ImageError::Io(format!("{} exists", dest.display())));
    }
    let mut s = dest.as_os_str().to_owned();
    s.push(".unpacking");
    let s = PathBuf::from(s);
    if s.exists() {
        std::fs::remove_dir_all(&s).map_err(io)?;
    }
    std::fs::create_dir_all(&s).map_err(io)?;
    Ok(s)
}

/// Decompresses and untars `input` into `dir`; the SHA-256 of the tar
/// stream (`sha256:<hex>`).
fn untar(input: impl Read, compression: Compression, dir: &Path) -> Result<String, ImageError> {
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input).map_err(io)?),
    };
    let mut hashing = Hashing {
        inner: reader,
        ctx: digest::Context::new(&digest::SHA256),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let kind = entry.header().entry_type();
            if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
                continue;
            }
            let path = entry.path().map_err(io)?.to_path_buf();
            let done = entry
                .unpack_in(dir)
                .map_err(|e| malformed("layer tar", format!("{}: {e}", path.display())))?;
            if !done {
                return Err(malformed(
                    "layer tar",
                    format!("{} would escape the layer directory", path.display()),
                ));
            }
        }
    }
    // The tar end-of-archive blocks and any padding count for diff_id.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(hashing.ctx.finish().as_ref())
    ))
}

fn check_diff_id(expected: &str, actual: &str) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::Digest {
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

fn finish(result: Result<(), ImageError>, staging: &Path, dest: &Path) -> Result<(), ImageError> {
    match result {
        Ok(()) => std::fs::rename(staging, dest).map_err(io),
        Err(e) => {
            let _ = std::fs::remove_dir_all(staging);
            Err(e)
        }
    }
}

/// Unpacks a plaintext layer blob into `dest` (created; must not exist).
pub fn unpack_layer(
    blob: impl Read,
    compression: Compression,
    diff_id: &str,
    dest: &Path,
) -> Result<(), ImageError> {
    let staging = staging_path(dest)?;
    let r = untar(blob, compression, &staging).and_then(|actual| check_diff_id(diff_id, &actual));
    finish(r, &staging, dest)
}

/// A [`Stage`] that hands plaintext to the unpacking thread through a
/// bounded channel.
struct PipeStage {
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
}

impl Stage for PipeStage {
    fn write(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("pipe closed"))?;
        tx.send(plain.to_vec())
            .map_err(|_| std::io::Error::other("the unpacking side stopped"))
    }
    fn commit(mut self) -> std::io::Result<()> {
        self.tx.take();
        Ok(())
    }
    fn abort(mut self) {
        self.tx.take();
    }
}

/// Reads what [`PipeStage`] sends.
struct PipeReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        out.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(rest.get(..n).unwrap_or_default());
        self.pos = self.pos.saturating_add(n);
        Ok(n)
    }
}

/// Decrypts, decompresses and unpacks an encrypted layer in one pass into
/// `dest`, which appears only if the HMAC, the blob digest and the
/// `diff_id` are all right.
pub fn decrypt_and_unpack(
    ciphertext: impl Read,
    public: &PublicOptions,
    private: &PrivateOptions,
    compression: Compression,
    diff_id: &str,
    dest: &Path,
) -> Result<(), ImageError> {
    let staging = staging_path(dest)?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
    let dir = staging.clone();
    let unpacker = std::thread::spawn(move || {
        let mut reader = PipeReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let r = untar(&mut reader, compression, &dir);
        // Drain, so the decrypting side never blocks on a full channel.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        r
    });
    // The diff_id of the tar authenticates the plaintext further down; the
    // HMAC authenticates the ciphertext.
    let decrypted =
        layer::decrypt_to_hmac_only(ciphertext, public, private, PipeStage { tx: Some(tx) });
    let unpacked = unpacker
        .join()
        .map_err(|_| ImageError::Io("the unpacking thread failed".into()))
        .and_then(|r| r);
    // The cipher's verdict first: a forged layer is reported as such, not
    // as whatever the garbage plaintext did to the tar reader.
    let r = decrypted
        .and(unpacked)
        .and_then(|actual| check_diff_id(diff_id, &actual));
    finish(r, &staging, dest)
}

/// Writes a tar archive of `files` (path, contents), for tests and tools.
pub fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>, ImageError> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, *data).map_err(io)?;
    }
    b.into_inner().map_err(io)
}

/// gzip of `data`, for tests and tools.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).map_err(io)?;
    e.finish().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        format!(
            "sha256:{}",
            hex::encode(digest::digest(&digest::SHA256, b).as_ref())
        )
    }

    fn sample() -> (Vec<u8>, String) {
        let tar = tar_of(&[
            ("etc/app.conf", b"key = value\n"),
            ("usr/bin/app", &[0x7f, b'E', b'L', b'F']),
        ])
        .unwrap();
        let diff_id = sha(&tar);
        (tar, diff_id)
    }

    #[test]
    fn plain_layers_in_every_compression() {
        let (tar, diff_id) = sample();
        let t = tempfile::tempdir().unwrap();
        let blobs = [
            (Compression::None, tar.clone()),
            (Compression::Gzip, gzip(&tar).unwrap()),
            (
                Compression::Zstd,
                zstd::encode_all(tar.as_slice(), 3).unwrap(),
            ),
        ];
        for (i, (c, blob)) in blobs.iter().enumerate() {
            let dest = t.path().join(format!("l{i}"));
            unpack_layer(blob.as_slice(), *c, &diff_id, &dest).unwrap();
            assert_eq!(
                std::fs::read(dest.join("etc/app.conf")).unwrap(),
                b"key = value\n"
            );
        }
        // A wrong diff_id: nothing appears.
        let dest = t.path().join("bad");
        let wrong = sha(b"other");
        assert!(matches!(
            unpack_layer(blobs[1].1.as_slice(), Compression::Gzip, &wrong, &dest),
            Err(ImageError::Digest { .. })
        ));
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            3,
            "no staging left"
        );
    }

    #[test]
    fn encrypted_layer_in_one_pass() {
        let (tar, diff_id) = sample();
        let blob = gzip(&tar).unwrap();
        let mut ct = Vec::new();
        let e = layer::encrypt_to(blob.as_slice(), &mut ct).unwrap();
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("layer");
        decrypt_and_unpack(
            ct.as_slice(),
            &e.public,
            &e.private,
            Compression::Gzip,
            &diff_id,
            &dest,
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dest.join("usr/bin/app")).unwrap(),
            [0x7f, b'E', b'L', b'F']
        );
        // A flipped byte anywhere: the HMAC refuses it and nothing appears.
        for i in [0, ct.len() / 2, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 0x20;
            let dest = t.path().join(format!("bad{i}"));
            assert_eq!(
                decrypt_and_unpack(
                    bad.as_slice(),
                    &e.public,
                    &e.private,
                    Compression::Gzip,
                    &diff_id,
                    &dest
                ),
                Err(ImageError::Hmac),
                "byte {i}"
            );
            assert!(!dest.exists());
        }
        // Genuine but the wrong diff_id.
        let dest = t.path().join("wrong-diff");
        assert!(matches!(
            decrypt_and_unpack(
                ct.as_slice(),
                &e.public,
                &e.private,
                Compression::Gzip,
                &sha(b"x"),
                &dest
            ),
            Err(ImageError::Digest { .. })
        ));
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "no staging left"
        );
    }

    #[test]
    fn entries_escaping_the_layer_are_refused() {
        // A hand-made header with a `..` path (the builder refuses to write one).
        let mut h = tar::Header::new_old();
        let name = b"../escape";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(b"x");
        tar.resize(1024, 0);
        tar.extend_from_slice(&[0u8; 1024]);
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("inner").join("layer");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let r = unpack_layer(tar.as_slice(), Compression::None, &sha(&tar), &dest);
        assert!(r.is_err(), "{r:?}");
        assert!(!t.path().join("inner/escape").exists());
        assert!(!dest.exists());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar").unwrap(),
            Compression::None
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert!(Compression::from_media_type("application/json").is_err());
    }
}
