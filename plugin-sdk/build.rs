//! Renders the scaffold's `src/lib.rs` for the SDK's own test of the
//! template (tests/template.rs), so a change to the SDK that breaks newly
//! generated packs fails here first.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=template/src/lib.rs.tmpl");
    let source = std::fs::read_to_string("template/src/lib.rs.tmpl").expect("template lib.rs");
    // Same substitutions as `template::render("template-check", ..)`; the
    // inner doc comments go because the file is included into a module.
    let rendered: String = source
        .replace("{{crate}}", "template_check")
        .replace("{{id}}", "template-check")
        .replace("{{type}}", "TemplateCheck")
        .replace("{{name}}", "template-check")
        .lines()
        .filter(|l| !l.starts_with("//!"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(Path::new(&out).join("template_lib.rs"), rendered)
        .expect("write rendered template");
}
