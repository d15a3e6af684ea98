//! The plugin runtime's synchronous [`StateStore`] on top of the async
//! relational store: state writes, outcomes and pack positions of one
//! batch commit in one database transaction.
//!
//! The runtime calls from its own blocking worker threads, never from an
//! async task, so each call blocks that thread on the tokio runtime whose
//! handle the bridge was given.

use std::sync::Arc;

use opm_model::Str;
use opm_model::plugin::{Commit, StateError, StateKey, StateStore, StateValue};
use tokio::runtime::Handle;

use super::{RelationalStore, UnlockSource};
use crate::error::StoreError;

pub struct SqlStateStore {
    store: Arc<dyn RelationalStore>,
    handle: Handle,
    source: UnlockSource,
}

impl SqlStateStore {
    /// Unlocks are recorded as `live`.
    pub fn new(store: Arc<dyn RelationalStore>, handle: Handle) -> SqlStateStore {
        SqlStateStore {
            store,
            handle,
            source: UnlockSource::Live,
        }
    }

    /// For replays and imports: unlocks are recorded with `source`.
    pub fn with_source(mut self, source: UnlockSource) -> SqlStateStore {
        self.source = source;
        self
    }

    fn block<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StateError> {
        // Calling from inside a runtime worker would deadlock the runtime:
        // refuse loudly instead (the contract is "blocking threads only").
        if Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
        {
            return Err(StateError::Unavailable(
                "SqlStateStore called on a current-thread runtime".into(),
            ));
        }
        let result = match Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.handle.block_on(f)),
            Err(_) => self.handle.block_on(f),
        };
        result.map_err(|e| StateError::Unavailable(e.to_string()))
    }
}

impl StateStore for SqlStateStore {
    fn load_pack(&self, pack: &str) -> Result<Vec<(StateKey, StateValue)>, StateError> {
        self.block(self.store.load_pack_state(pack))
    }

    fn positions(&self, pack: &str) -> Result<Vec<(Str, u64)>, StateError> {
        let rows = self.block(self.store.pack_positions(pack))?;
        Ok(rows.into_iter().map(|(s, p)| (Str::from(s), p)).collect())
    }

    fn commit(&self, commit: &Commit) -> Result<(), StateError> {
        self.block(self.store.commit_pack(commit, self.source))
    }
}
