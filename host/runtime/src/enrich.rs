//! Enrichers: components of the `enricher` world that derive fields for
//! events before the tracker and the packs see them.
//!
//! They are pure (no state), so recovery is simpler than for packs: a
//! failed call drops the instance and is retried once; if it fails again the
//! batch goes on unenriched and the failure is recorded against the first
//! event of the batch.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use opm_model::{Event, EventKind, Str};
use parking_lot::Mutex;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::bindings::enricher::{Enricher, EnricherPre};
use crate::bindings::kind_from_wit;
use crate::convert;
use crate::error::{ErrorKind, Failure, LoadError};
use crate::host::Inner;
use crate::sandbox::{self, LogLine, StoreData};

/// Derived fields one call may return per event.
const FIELDS_PER_EVENT: usize = 16;
const FIELD_BYTES: usize = 512;

type WarmEnricher = (Store<StoreData>, Enricher);

pub(crate) struct EnricherEntry {
    id: Str,
    version: Str,
    path: PathBuf,
    sha256: String,
    kinds: Vec<bool>,
    config: Vec<(String, String)>,
    pre: EnricherPre<StoreData>,
    slots: Vec<Mutex<Option<WarmEnricher>>>,
    logs: Arc<Mutex<VecDeque<LogLine>>>,
    failures: AtomicU64,
}

/// Status of one enricher.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnricherStatus {
    pub id: Str,
    pub version: Str,
    pub path: PathBuf,
    pub sha256: String,
    pub kinds: Vec<EventKind>,
    pub failures: u64,
}

impl Inner {
    fn new_enricher(
        &self,
        pre: &EnricherPre<StoreData>,
        config: &[(String, String)],
        id: Str,
        version: Str,
        logs: Arc<Mutex<VecDeque<LogLine>>>,
    ) -> Result<
        (
            Store<StoreData>,
            Enricher,
            crate::bindings::enricher::EnricherInfo,
        ),
        LoadError,
    > {
        let mut store = sandbox::new_store(&self.engine, &self.cfg, id, version, logs, false);
        self.arm(&mut store, self.cfg.ticks(self.cfg.describe_deadline));
        let e = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let info = e
            .call_describe_enricher(&mut store, config)
            .map_err(|e| LoadError::Describe(format!("{e:#}")))?
            .map_err(|e| LoadError::Describe(format!("{e:?}")))?;
        Ok((store, e, info))
    }

    pub(crate) fn install_enricher(
        &self,
        path: &Path,
        pre: InstancePre<StoreData>,
        config: Vec<(String, String)>,
        sha: String,
    ) -> Result<(), LoadError> {
        let pre = EnricherPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let (_, _, info) =
            self.new_enricher(&pre, &config, Str::from("?"), Str::from("?"), logs.clone())?;
        if info.id.trim().is_empty() || info.version.trim().is_empty() || info.kinds.is_empty() {
            return Err(LoadError::Metadata(
                "an enricher needs an id, a version and event kinds".into(),
            ));
        }
        let mut kinds = vec![false; EventKind::ALL.len()];
        for k in &info.kinds {
            kinds[kind_from_wit(*k) as usize] = true;
        }
        let id: Str = Str::from(info.id.as_str());
        let entry = Arc::new(EnricherEntry {
            id: id.clone(),
            version: Str::from(info.version.as_str()),
            path: path.to_path_buf(),
            sha256: sha,
            kinds,
            config,
            pre,
            slots: (0..self.cfg.workers).map(|_| Mutex::new(None)).collect(),
            logs,
            failures: AtomicU64::new(0),
        });
        let list = self.enrichers.load_full();
        let mut list: Vec<_> = list
            .iter()
            .filter(|e| e.id != id && e.path != path)
            .cloned()
            .collect();
        list.push(entry);
        list.sort_by(|a, b| a.id.cmp(&b.id));
        self.enrichers.store(Arc::new(list));
        self.install_enricher_path(path, id);
        Ok(())
    }

    pub(crate) fn remove_enricher(&self, id: &Str) {
        let list = self.enrichers.load_full();
        self.enrichers.store(Arc::new(
            list.iter().filter(|e| &e.id != id).cloned().collect(),
        ));
    }

    pub(crate) fn enricher_status(&self) -> Vec<EnricherStatus> {
        self.enrichers
            .load()
            .iter()
            .map(|e| EnricherStatus {
                id: e.id.clone(),
                version: e.version.clone(),
                path: e.path.clone(),
                sha256: e.sha256.clone(),
                kinds: EventKind::ALL
                    .iter()
                    .copied()
                    .filter(|&k| e.kinds[k as usize])
                    .collect(),
                failures: e.failures.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn run_enrichers(&self, w: usize, events: &mut [Event]) {
        let list = self.enrichers.load_full();
        for e in list.iter() {
            let sel: Vec<usize> = (0..events.len())
                .filter(|&i| e.kinds[events[i].kind as usize])
                .collect();
            if sel.is_empty() {
                continue;
            }
            let mut last = None;
            for _ in 0..2 {
                match self.enrich_once(e, w, events, &sel) {
                    Ok(fields) => {
                        for (i, name, value) in fields {
                            events[i].extra.push((name, value));
                        }
                        last = None;
                        break;
                    }
                    Err(f) => last = Some(f),
                }
            }
            if let Some((kind, message)) = last {
                let ev = &events[sel[0]];
                let failure = Failure {
                    pack: e.id.clone(),
                    version: e.version.clone(),
                    server: ev.server.clone(),
                    event_id: ev.id,
                    kind,
                    message,
                    at: SystemTime::now(),
                };
                tracing::warn!(enricher = %e.id, event = ev.id, "enricher failed: {}", failure.message);
                e.failures.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .errors
                    .with_label_values(&[&*e.id, &*e.version, kind.as_str()])
                    .inc();
                self.record_failure(failure);
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn enrich_once(
        &self,
        e: &EnricherEntry,
        w: usize,
        events: &[Event],
        sel: &[usize],
    ) -> Result<Vec<(usize, Str, Str)>, (ErrorKind, String)> {
        let mut slot = e.slots[w].lock();
        if slot.is_none() {
            let (store, inst, _) = self
                .new_enricher(
                    &e.pre,
                    &e.config,
                    e.id.clone(),
                    e.version.clone(),
                    e.logs.clone(),
                )
                .map_err(|err| (ErrorKind::Instantiate, err.to_string()))?;
            *slot = Some((store, inst));
        }
        let (store, inst) = slot.as_mut().expect("just filled");
        let lowered = convert::lower(sel.iter().map(|&i| &events[i]));
        store.data_mut().log.lines = 0;
        self.arm(store, self.cfg.batch_ticks(sel.len()));
        let r = inst.call_enrich(&mut *store, &lowered.batch);
        self.account(store);
        let fault = match r {
            Err(err) => (sandbox::classify(&err), format!("{err:#}")),
            Ok(Err(pe)) => (ErrorKind::PluginError, format!("{pe:?}")),
            Ok(Ok(fields)) => {
                if fields.len() > sel.len() * FIELDS_PER_EVENT {
                    (
                        ErrorKind::InvalidOutput,
                        format!("{} fields for {} events", fields.len(), sel.len()),
                    )
                } else if let Some(f) = fields.iter().find(|f| {
                    f.event as usize >= sel.len()
                        || f.name.is_empty()
                        || f.name.len() > FIELD_BYTES
                        || f.value.len() > FIELD_BYTES
                }) {
                    (
                        ErrorKind::InvalidOutput,
                        format!("bad derived field {:?} for event {}", f.name, f.event),
                    )
                } else {
                    return Ok(fields
                        .into_iter()
                        .map(|f| (sel[f.event as usize], Str::from(f.name), Str::from(f.value)))
                        .collect());
                }
            }
        };
        *slot = None;
        self.metrics.recycles.with_label_values(&[&*e.id]).inc();
        Err(fault)
    }
}
