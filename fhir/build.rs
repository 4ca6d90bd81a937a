//! Embeds the generated FHIR model and resource table DEFLATE-compressed:
//! as JSON they are 1.2 MB of every function binary (the arm64 size budget
//! in the README); compressed, about a tenth. The JSON stays in the tree,
//! readable and diffable; `embedded::inflate` restores it on first use.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in ["r4-model.json", "resource-table.json"] {
        println!("cargo:rerun-if-changed=src/{name}");
        let json = std::fs::read(format!("src/{name}")).expect("the generated JSON is checked in");
        let packed = miniz_oxide::deflate::compress_to_vec(&json, 9);
        std::fs::write(out.join(format!("{name}.deflate")), packed).expect("OUT_DIR is writable");
    }
}
