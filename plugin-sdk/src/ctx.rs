//! The per-batch context: state access, outcomes and logging.

use crate::event::{AsPlayer, Batch, Event, PlayerRef};
use crate::limits;
use crate::state::{Backend, Level, Scope, State};

/// An outcome as the pack emits it: the player is a batch reference, the
/// event is named by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unlock {
        player: PlayerRef,
        code: String,
        event_id: u64,
    },
    Progress {
        player: PlayerRef,
        code: String,
        current: u64,
        target: u64,
        event_id: u64,
    },
}

/// What a pack works with during one `on_batch` call.
pub struct Ctx<'b> {
    backend: &'b mut dyn Backend,
    outcomes: Vec<Outcome>,
    /// The host rejects a batch with more outcomes than this.
    outcome_limit: usize,
    log_lines: usize,
    dropped_progress: usize,
}

impl<'b> Ctx<'b> {
    #[doc(hidden)]
    pub fn new(backend: &'b mut dyn Backend, batch: &Batch) -> Ctx<'b> {
        Ctx {
            backend,
            outcomes: Vec::new(),
            outcome_limit: batch.len() + limits::OUTCOME_SLACK,
            log_lines: 0,
            dropped_progress: 0,
        }
    }

    /// Ends the batch: logs what had to be dropped and hands the outcomes
    /// over in emission order.
    #[doc(hidden)]
    pub fn finish(mut self) -> Vec<Outcome> {
        if self.dropped_progress > 0 {
            let message = format!(
                "dropped {} progress outcomes to stay within {} outcomes for this batch",
                self.dropped_progress, self.outcome_limit
            );
            self.log(Level::Warn, &message);
        }
        self.outcomes
    }

    /// Outcomes emitted so far in this batch.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    /// A player's state in any scope, as of `ev`.
    pub fn state(&mut self, scope: Scope, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        State {
            backend: &mut *self.backend,
            at: ev.index(),
            scope,
            player: player.player().index(),
        }
    }

    /// State that lives forever.
    pub fn lifetime(&mut self, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        self.state(Scope::Lifetime, ev, player)
    }

    /// State of the server session `ev` belongs to.
    pub fn session(&mut self, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        self.state(Scope::Session, ev, player)
    }

    /// State of the match `ev` belongs to.
    pub fn per_match(&mut self, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        self.state(Scope::Match, ev, player)
    }

    /// State of the round `ev` belongs to.
    pub fn per_round(&mut self, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        self.state(Scope::Round, ev, player)
    }

    /// State of the player's life at `ev`: it starts empty after every
    /// spawn, so counters here are streaks that reset on death.
    pub fn per_life(&mut self, ev: &Event<'_>, player: impl AsPlayer) -> State<'_> {
        self.state(Scope::Life, ev, player)
    }

    /// Awards `code` to the player, caused by `ev`. Repeats are harmless:
    /// the host keeps the first unlock per player and code.
    pub fn unlock(&mut self, player: impl AsPlayer, code: &str, ev: &Event<'_>) {
        self.outcomes.push(Outcome::Unlock {
            player: player.player().index(),
            code: code.to_string(),
            event_id: ev.id(),
        });
    }

    /// Reports progress towards `code`. Progress is advisory: when a batch
    /// would exceed the host's outcome limit, progress is dropped (never an
    /// unlock) and a warning is logged.
    pub fn progress(
        &mut self,
        player: impl AsPlayer,
        code: &str,
        current: u64,
        target: u64,
        ev: &Event<'_>,
    ) {
        if self.outcomes.len() >= self.outcome_limit {
            self.dropped_progress += 1;
            return;
        }
        self.outcomes.push(Outcome::Progress {
            player: player.player().index(),
            code: code.to_string(),
            current,
            target,
            event_id: ev.id(),
        });
    }

    /// Writes a diagnostic line. The host keeps at most 64 lines per batch
    /// of at most 512 bytes; the SDK truncates and drops beyond that.
    pub fn log(&mut self, level: Level, message: &str) {
        if self.log_lines >= limits::MAX_LOG_LINES {
            return;
        }
        self.log_lines += 1;
        let mut end = message.len().min(limits::MAX_LOG_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.backend.log(level, &message[..end]);
    }

    pub fn debug(&mut self, message: &str) {
        self.log(Level::Debug, message)
    }

    pub fn info(&mut self, message: &str) {
        self.log(Level::Info, message)
    }

    pub fn warn(&mut self, message: &str) {
        self.log(Level::Warn, message)
    }
}
