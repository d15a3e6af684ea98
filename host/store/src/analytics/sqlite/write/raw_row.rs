//! One `raw_events` row per stored event: its 49 values bound straight
//! from the event, text without copies ([`BorrowingStatement`]).

use std::ffi::c_int;

use opm_model::{Event, Participant};
use rusqlite::Connection;

use super::borrowed::BorrowingStatement;
use super::err;
use crate::analytics::rows;
use crate::error::StoreError;
use crate::time;

const RAW_INSERT: &str = "INSERT INTO raw_events (server, event_id, month, time_ms, kind, type_name, game_time_ms, session, match_id, round, map, game_mode,
    actor_guid, actor_name, actor_smf_id, actor_team, actor_has_pos, actor_x, actor_y, actor_z, actor_pitch, actor_yaw, actor_stance, actor_health, actor_life,
    target_guid, target_name, target_smf_id, target_team, target_has_pos, target_x, target_y, target_z, target_pitch, target_yaw, target_stance, target_health, target_life,
    weapon, means_of_death, hit_location, damage, distance, headshot, grenade, moved, playtime, extra, raw)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
    ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25,
    ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38,
    ?39, ?40, ?41, ?42, ?43, ?44, ?45, ?46, ?47, ?48, ?49)";

/// The insert of raw rows for one batch; the events it writes must
/// outlive it.
pub(super) struct RawRows<'conn, 'events> {
    stmt: BorrowingStatement<'conn, 'events>,
    /// The `extra` column's JSON, written here row after row.
    extra: Vec<u8>,
}

/// An event's extra fields as the column holds them: a JSON array of
/// `[name, value]` pairs, in the order they were sent.
struct Pairs<'a>(&'a [(opm_model::Str, opm_model::Str)]);

impl serde::Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, v)| [&**k, &**v]))
    }
}

/// What an absent participant's columns hold.
static NOBODY: std::sync::LazyLock<Participant> = std::sync::LazyLock::new(Participant::default);

impl<'conn, 'events> RawRows<'conn, 'events> {
    pub fn prepare(conn: &'conn Connection) -> Result<Self, StoreError> {
        Ok(RawRows {
            stmt: BorrowingStatement::prepare(conn, RAW_INSERT).map_err(err)?,
            extra: Vec::new(),
        })
    }

    /// Inserts the event's row.
    pub fn insert(&mut self, e: &'events Event) -> Result<(), StoreError> {
        self.bind(e).and_then(|()| self.stmt.execute()).map_err(err)
    }

    fn bind(&mut self, e: &'events Event) -> rusqlite::Result<()> {
        let s = &mut self.stmt;
        s.text(1, &e.server)?;
        s.int(2, e.id as i64)?;
        s.int(3, time::month_id(e.time_ms) as i64)?;
        s.int(4, e.time_ms)?;
        s.text(5, e.kind.as_str())?;
        s.text(6, &e.type_name)?;
        match e.game_time_ms {
            Some(ms) => s.int(7, ms)?,
            None => s.null(7)?,
        }
        s.text(8, &e.session)?;
        s.text(9, &e.match_id)?;
        s.int(10, e.round as i64)?;
        s.text(11, &e.map)?;
        s.text(12, &e.game_mode)?;
        self.participant(13, e.actor.as_ref())?;
        self.participant(26, e.target.as_ref())?;
        let s = &mut self.stmt;
        s.text(39, &e.weapon)?;
        s.text(40, &e.means_of_death)?;
        s.text(41, &e.hit_location)?;
        s.real(42, e.damage as f64)?;
        s.real(43, e.distance as f64)?;
        s.int(
            44,
            (rows::is_kill(e) && rows::is_headshot(&e.hit_location)) as i64,
        )?;
        s.int(45, rows::is_grenade(e) as i64)?;
        s.real(46, rows::moved(e))?;
        s.real(47, rows::playtime(e))?;
        if e.extra.is_empty() {
            s.text(48, "[]")?;
        } else {
            self.extra.clear();
            // Strings into a vector: cannot fail.
            let _ = serde_json::to_writer(&mut self.extra, &Pairs(&e.extra));
            // SQLite copies it: the buffer is the next row's.
            s.text_copied(48, std::str::from_utf8(&self.extra).unwrap_or("[]"))?;
        }
        s.text(49, e.raw.as_deref().unwrap_or(""))
    }

    fn participant(
        &mut self,
        first: c_int,
        p: Option<&'events Participant>,
    ) -> rusqlite::Result<()> {
        let s = &mut self.stmt;
        let p: &'events Participant = match p {
            Some(p) => p,
            None => &NOBODY,
        };
        let pos = p.position.unwrap_or_default();
        s.text(first, &p.guid)?;
        s.text(first + 1, &p.name)?;
        s.int(first + 2, p.smf_id.unwrap_or(0) as i64)?;
        s.text(first + 3, p.team.as_str())?;
        s.int(first + 4, p.position.is_some() as i64)?;
        s.real(first + 5, pos.x as f64)?;
        s.real(first + 6, pos.y as f64)?;
        s.real(first + 7, pos.z as f64)?;
        s.real(first + 8, p.pitch as f64)?;
        s.real(first + 9, p.yaw as f64)?;
        s.text(first + 10, p.stance.as_str())?;
        match p.health {
            Some(h) => s.int(first + 11, h as i64)?,
            None => s.null(first + 11)?,
        }
        s.int(first + 12, p.life as i64)
    }
}
