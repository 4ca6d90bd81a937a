//! The generated JSON the build embeds compressed (see `build.rs`).

/// `r4-model.json`, DEFLATE-compressed.
pub(crate) const MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/r4-model.json.deflate"));
/// `resource-table.json`, DEFLATE-compressed.
pub(crate) const RESOURCE_TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/resource-table.json.deflate"));

/// The JSON text of an embedded file; done once per process by its caller.
pub(crate) fn inflate(packed: &[u8]) -> String {
    let bytes = miniz_oxide::inflate::decompress_to_vec(packed).expect("compressed by build.rs");
    String::from_utf8(bytes).expect("the generated JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_files_are_the_checked_in_json() {
        assert_eq!(super::inflate(super::MODEL), include_str!("r4-model.json"));
        assert_eq!(super::inflate(super::RESOURCE_TABLE), include_str!("resource-table.json"));
    }
}
