//! Host bindings for the WIT worlds, and the conversion between the
//! model's `EventKind` and the WIT enum (subscriptions arrive as WIT kinds;
//! packed events carry the model's discriminant, which a test checks is
//! the WIT case index).
//!
//! The conversion is generated from `opm_model::for_each_event_kind!`, so
//! both matches are exhaustive over the same list: adding a kind on one side
//! only fails to compile instead of silently mapping to `other`.

/// The `achievement-pack` world.
pub(crate) mod pack {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "achievement-pack",
        imports: { default: trappable },
    });
}

/// The `enricher` world; shares the `types` and `log` interfaces with
/// [`pack`] so one host implementation serves both.
pub(crate) mod enricher {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "enricher",
        imports: { default: trappable },
        with: {
            "openmohaa:stats/types": crate::bindings::pack::openmohaa::stats::types,
            "openmohaa:stats/log": crate::bindings::pack::openmohaa::stats::log,
        },
    });
}

pub(crate) use pack::openmohaa::stats::types as wit;

macro_rules! event_kind_conversions {
    ($($variant:ident => $wire:literal,)*) => {
        /// Model kind to WIT kind.
        #[cfg(test)]
        pub(crate) fn kind_to_wit(kind: opm_model::EventKind) -> wit::EventKind {
            match kind {
                $(opm_model::EventKind::$variant => wit::EventKind::$variant,)*
            }
        }

        /// WIT kind to model kind.
        pub(crate) fn kind_from_wit(kind: wit::EventKind) -> opm_model::EventKind {
            match kind {
                $(wit::EventKind::$variant => opm_model::EventKind::$variant,)*
            }
        }
    };
}

opm_model::for_each_event_kind!(event_kind_conversions);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_wit() {
        for &kind in opm_model::EventKind::ALL {
            assert_eq!(kind_from_wit(kind_to_wit(kind)), kind);
            // Packed events carry the model's discriminant as the case
            // index (`opm_plugin_abi::lower`).
            assert_eq!(kind as u8, kind_to_wit(kind) as u8, "{kind:?}");
        }
    }
}
