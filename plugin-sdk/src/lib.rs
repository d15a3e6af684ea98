//! The OpenMOHAA Stats plugin SDK: write achievement packs in plain Rust.
//!
//! A pack is a type implementing [`Pack`], exported with [`export_pack!`].
//! It receives batches of typed [`Event`]s, keeps its memory in host-owned,
//! transactional [`State`] through a [`Ctx`], and emits unlocks and
//! progress. Achievements are declared as data in a [`table`] and evaluated
//! by the [`rules`] helpers; the WIT contract (`wit/stats.wit`) never shows.
//!
//! ```
//! use opm_plugin_sdk::prelude::*;
//!
//! const ACHIEVEMENTS: &[Achievement] = &[Achievement::new("first_blood", "First Blood", "Get your first kill")
//!     .rule(Rule::Milestone { stat: "kills", threshold: 1 })];
//!
//! #[derive(Default)]
//! struct MyPack;
//!
//! impl Pack for MyPack {
//!     fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
//!         Ok(PackInfo::new("my-pack", "0.1.0")
//!             .achievements(ACHIEVEMENTS)
//!             .subscribe(Subscription::kinds(&[EventKind::PlayerKill])))
//!     }
//!
//!     fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
//!         for ev in batch.events() {
//!             if let Some(killer) = ev.credited_kill() {
//!                 ctx.count(&ev, killer, "kills", 1, ACHIEVEMENTS);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_pack!(MyPack);
//!
//! // Natively, the harness runs it the way the server would.
//! # #[cfg(not(target_arch = "wasm32"))] {
//! use opm_plugin_sdk::testing::{Harness, Split};
//! let kill = r#"{"type":"player_kill","attacker_guid":"42","victim_guid":"7","timestamp":"12.5"}"#;
//! let outcomes = Harness::<MyPack>::new().unwrap().run_jsonl(kill, &Split::Whole).unwrap();
//! assert_eq!(outcomes[0].to_line(), r#"{"player":"42","code":"first_blood","kind":"unlock","event_id":1024}"#);
//! # }
//! ```
//!
//! On `wasm32` the crate generates the component bindings and
//! [`export_pack!`] exports the pack; on every other target it provides the
//! [`testing`] harness, which runs a pack natively against an emulation of
//! the host (tracker, ids, subscriptions, transactional scoped state) and
//! compares its outcomes with golden files.

mod cache;
mod ctx;
mod event;
mod keys;
mod kind;
mod pack;
pub mod rules;
mod state;
pub mod table;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

#[cfg(not(target_arch = "wasm32"))]
pub mod template;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub use cache::run_batch;
pub use ctx::{Ctx, Outcome};
pub use event::{AsPlayer, Batch, Event, Player, PlayerRef, PlayerView, Stance, Team, Vec3};
pub use kind::EventKind;
pub use pack::{AchievementInfo, Config, Pack, PackError, PackInfo, Subscription};
pub use rules::{Aggregate, Closed, Filter, MatchResult, Per};
#[doc(hidden)]
pub use state::{Backend, CounterOp, CounterWrite};
pub use state::{Level, Scope, State};
pub use table::{Achievement, Rule};

/// Everything a pack usually needs.
pub mod prelude {
    pub use crate::rules::{Aggregate, Closed, Filter, MatchResult, Per, filtered_key};
    pub use crate::{
        Achievement, AsPlayer, Batch, Config, Ctx, Event, EventKind, Level, Pack, PackError,
        PackInfo, Player, PlayerView, Rule, Scope, Stance, Subscription, Team, export_pack,
    };
}

/// The host's limits, as the SDK and the harness enforce them.
pub mod limits {
    /// Longest state key, in bytes.
    pub const MAX_KEY_BYTES: usize = 128;
    /// Largest blob, in bytes.
    pub const MAX_BLOB_BYTES: usize = 4096;
    /// Log lines the host keeps per batch.
    pub const MAX_LOG_LINES: usize = 64;
    /// Longest log line, in bytes.
    pub const MAX_LOG_BYTES: usize = 512;
    /// A batch may emit at most `events + OUTCOME_SLACK` outcomes.
    pub const OUTCOME_SLACK: usize = 64;
    /// Members of one distinct set.
    pub const MAX_SET_MEMBERS: usize = 1024;
    /// Longest set member, in bytes.
    pub const MAX_SET_MEMBER_BYTES: usize = 128;
    /// Distinct keys one pack may hold for one player, over every scope
    /// and instance (enforced by the host; ended lives, rounds and matches
    /// are dropped, so only live instances count).
    pub const MAX_KEYS_PER_PLAYER: usize = 256;
    /// Linear memory of one instance.
    pub const MEMORY_BYTES: usize = 32 << 20;
}

/// Exports a [`Pack`] as the component's `achievement-pack` world.
///
/// Expands to nothing on targets other than `wasm32`, so the same crate
/// builds natively for `cargo test`.
#[macro_export]
macro_rules! export_pack {
    ($pack:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static __OPM_PACK: ::std::cell::RefCell<::std::option::Option<$pack>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct __OpmGuest;

            impl $crate::guest::bindings::Guest for __OpmGuest {
                fn describe(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::guest::WitPackInfo, $crate::guest::WitPluginError> {
                    __OPM_PACK.with(|slot| $crate::guest::describe::<$pack>(&mut slot.borrow_mut(), config))
                }

                fn on_batch(
                    batch: $crate::guest::WitBatch,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::guest::WitOutcome>, $crate::guest::WitPluginError> {
                    __OPM_PACK.with(|slot| $crate::guest::on_batch::<$pack>(&mut slot.borrow_mut(), batch))
                }
            }

            $crate::guest::bindings::__opm_export_world!(__OpmGuest with_types_in $crate::guest::bindings);
        };
    };
}
