//! The scaffold `opm-stats plugin new` writes must compile against this SDK
//! and pass its own golden fixture.

mod rendered {
    include!(concat!(env!("OUT_DIR"), "/template_lib.rs"));
}

use opm_plugin_sdk::template::{SdkSource, render};
use opm_plugin_sdk::testing::check_golden;

#[test]
fn the_scaffold_passes_its_own_golden_test() {
    let dir = std::env::temp_dir().join(format!("opm-template-check-{}", std::process::id()));
    let files = render("template-check", &SdkSource::Version("0.1".into())).unwrap();
    for (path, text) in &files {
        if path.starts_with("tests/golden") {
            let target = dir.join(path.file_name().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(target, text).unwrap();
        }
    }
    let result = check_golden::<rendered::TemplateCheck>(&dir.join("first_kills.events.jsonl"));
    std::fs::remove_dir_all(&dir).unwrap();
    result.unwrap();
}
