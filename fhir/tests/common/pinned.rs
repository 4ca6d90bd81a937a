//! Vendored upstream files, checked byte for byte: `PINNED` in a vendored
//! directory lists `<git blob id> <upstream path>` per file.

use std::path::{Path, PathBuf};

/// Git's blob id of `bytes`: what upstream's tree names the file by.
pub fn git_blob_id(bytes: &[u8]) -> String {
    let mut framed = format!("blob {}\0", bytes.len()).into_bytes();
    framed.extend_from_slice(bytes);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &framed);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts every file `dir/PINNED` lists is upstream's, found where
/// `local` puts it; returns the vendored paths.
pub fn assert_pinned(dir: &Path, local: impl Fn(&str) -> PathBuf) -> Vec<PathBuf> {
    let pinned = std::fs::read_to_string(dir.join("PINNED")).unwrap();
    let mut files = vec![];
    for line in pinned.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (blob, upstream) = line.split_once(' ').expect("`<blob id> <upstream path>`");
        let path = local(upstream);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(git_blob_id(&bytes), blob, "{upstream} differs from upstream");
        files.push(path);
    }
    files
}
