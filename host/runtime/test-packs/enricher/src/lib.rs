//! A test enricher, written against the raw WIT bindings (events read
//! with `opm-plugin-abi`, as a non-SDK plugin would): adds
//! `weapon_class` (`rifle`, `smg` or `other`) to kill events, and with
//! config `mode=panic` panics instead.

// The generated export glue takes the batch record flattened (ten
// pointer/length words), which is the canonical ABI's shape, not ours.
#![allow(clippy::too_many_arguments)]

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
        let events = &batch.events;
        Ok((0..opm_plugin_abi::count(events))
            .filter_map(|i| opm_plugin_abi::PackedEvent::at(events, i).map(|ev| (i, ev)))
            .map(|(i, ev)| {
                let weapon =
                    opm_plugin_abi::symbol(&batch.symbol_text, &batch.symbol_ends, ev.weapon());
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
