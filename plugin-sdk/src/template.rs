//! The scaffold behind `opm-stats plugin new NAME`: a small working pack
//! with a golden test, rendered from the files in `plugin-sdk/template/`
//! (embedded at compile time, so the CLI carries them).
//!
//! Placeholders: `{{name}}` (crate name, as given), `{{crate}}` (its Rust
//! identifier), `{{id}}` (pack id, same as the name), `{{type}}` (the pack
//! type, CamelCase) and `{{sdk_dependency}}` (the SDK dependency spec).

use std::path::{Path, PathBuf};

use thiserror::Error;

/// One file of the template: where it goes and its unrendered text.
#[derive(Debug, Clone, Copy)]
pub struct TemplateFile {
    pub path: &'static str,
    pub text: &'static str,
}

macro_rules! template_files {
    ($($path:literal => $source:literal,)*) => {
        /// Every file of the template.
        pub const FILES: &[TemplateFile] = &[$(TemplateFile {
            path: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/template/", $source)),
        },)*];
    };
}

template_files! {
    "Cargo.toml" => "Cargo.toml.tmpl",
    "README.md" => "README.md.tmpl",
    ".gitignore" => "gitignore.tmpl",
    "src/lib.rs" => "src/lib.rs.tmpl",
    "tests/golden.rs" => "tests/golden.rs.tmpl",
    "tests/golden/first_kills.events.jsonl" => "tests/golden/first_kills.events.jsonl",
    "tests/golden/first_kills.expected.jsonl" => "tests/golden/first_kills.expected.jsonl",
}

/// Where the new pack gets the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A checkout of the SDK crate (the `plugin-sdk` directory).
    Path(PathBuf),
    /// A published version requirement ("0.1").
    Version(String),
}

impl SdkSource {
    fn dependency(&self) -> String {
        match self {
            SdkSource::Path(p) => {
                let p = p
                    .display()
                    .to_string()
                    .replace('\\', "/")
                    .replace('"', "\\\"");
                format!("{{ path = \"{p}\" }}")
            }
            SdkSource::Version(v) => format!("\"{}\"", v.replace('"', "")),
        }
    }
}

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error(
        "pack name {0:?}: use 2 to 64 lower-case letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    #[error("{0} exists and is not empty")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Checks a pack name: it becomes the crate name and the pack id.
pub fn check_name(name: &str) -> Result<(), TemplateError> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(TemplateError::BadName(name.to_string()))
    }
}

fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The template's files rendered for `name`, as (relative path, text).
pub fn render(name: &str, sdk: &SdkSource) -> Result<Vec<(PathBuf, String)>, TemplateError> {
    check_name(name)?;
    let krate = name.replace('-', "_");
    let ty = camel(name);
    let dependency = sdk.dependency();
    Ok(FILES
        .iter()
        .map(|f| {
            let text = f
                .text
                .replace("{{name}}", name)
                .replace("{{crate}}", &krate)
                .replace("{{id}}", name)
                .replace("{{type}}", &ty)
                .replace("{{sdk_dependency}}", &dependency);
            (PathBuf::from(f.path), text)
        })
        .collect())
}

/// Writes a new pack into `dir`, which must not exist or be empty.
pub fn generate(dir: &Path, name: &str, sdk: &SdkSource) -> Result<Vec<PathBuf>, TemplateError> {
    let files = render(name, sdk)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io { path, source }
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(TemplateError::NotEmpty(dir.to_path_buf()));
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["my-pack", "ab", "pack2", "weapon-masters"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "My-Pack", "1pack", "pack-", "pa--ck", "pa_ck", "päck",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(camel("weapon-masters-2"), "WeaponMasters2");
    }

    #[test]
    fn renders_every_placeholder() {
        let files = render("weapon-masters", &SdkSource::Version("0.1".into())).unwrap();
        assert_eq!(files.len(), FILES.len());
        for (path, text) in &files {
            assert!(
                !text.contains("{{"),
                "{} keeps a placeholder",
                path.display()
            );
        }
        let lib = &files
            .iter()
            .find(|(p, _)| p == Path::new("src/lib.rs"))
            .unwrap()
            .1;
        assert!(lib.contains("pub struct WeaponMasters;"));
        assert!(lib.contains("\"weapon_masters_first_kill\";"));
        let manifest = &files
            .iter()
            .find(|(p, _)| p == Path::new("Cargo.toml"))
            .unwrap()
            .1;
        assert!(manifest.contains("opm-plugin-sdk = \"0.1\""));
        let path = render("x1", &SdkSource::Path("/src/plugin-sdk".into())).unwrap();
        assert!(
            path[0]
                .1
                .contains("opm-plugin-sdk = { path = \"/src/plugin-sdk\" }")
        );
    }

    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = std::env::temp_dir().join(format!("opm-template-test-{}", std::process::id()));
        let sdk = SdkSource::Version("0.1".into());
        let written = generate(&dir, "fresh-pack", &sdk).unwrap();
        assert!(written.iter().all(|p| p.is_file()));
        assert!(matches!(
            generate(&dir, "fresh-pack", &sdk),
            Err(TemplateError::NotEmpty(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
