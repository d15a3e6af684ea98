//! A test enricher, written against the raw WIT bindings: adds
//! `weapon_class` (`rifle`, `smg` or `other`) to kill events, and with
//! config `mode=panic` panics instead.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "enricher",
});

use std::cell::Cell;

thread_local! {
    static PANIC: Cell<bool> = const { Cell::new(false) };
}

struct Enricher;

impl Guest for Enricher {
    fn describe_enricher(config: Vec<(String, String)>) -> Result<EnricherInfo, PluginError> {
        let panic = config.iter().any(|(k, v)| k == "mode" && v == "panic");
        PANIC.with(|p| p.set(panic));
        Ok(EnricherInfo {
            id: String::from("weapon-class"),
            version: String::from("1.0.0"),
            kinds: vec![EventKind::PlayerKill],
        })
    }

    fn enrich(batch: Batch) -> Result<Vec<DerivedField>, PluginError> {
        if PANIC.with(Cell::get) {
            panic!("enricher told to panic");
        }
        Ok(batch
            .events
            .iter()
            .enumerate()
            .map(|(i, ev)| {
                let weapon = batch.symbols[ev.weapon as usize].as_str();
                let class = match weapon {
                    "kar98" | "springfield" => "rifle",
                    "thompson" | "mp40" => "smg",
                    _ => "other",
                };
                DerivedField {
                    event: i as u32,
                    name: String::from("weapon_class"),
                    value: class.to_string(),
                }
            })
            .collect())
    }
}

export!(Enricher);
