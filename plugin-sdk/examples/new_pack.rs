//! Scaffolds a pack from the SDK template without the `opm-stats` CLI:
//! `cargo run -p opm-plugin-sdk --example new_pack -- DIR NAME`.
//! The new pack depends on this checkout of the SDK by path.

use std::path::PathBuf;
use std::process::ExitCode;

use opm_plugin_sdk::template::{SdkSource, generate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, name] = args.as_slice() else {
        eprintln!("usage: new_pack DIR NAME");
        return ExitCode::from(2);
    };
    let sdk = SdkSource::Path(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match generate(&PathBuf::from(dir), name, &sdk) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
