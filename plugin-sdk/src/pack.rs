//! The author-facing pack interface and its metadata types.

use crate::table::Achievement;
use crate::{Batch, Ctx, EventKind};

/// An achievement pack. Implement it on a plain type and hand the type to
/// [`export_pack!`](crate::export_pack).
///
/// Guest memory is not durable: the host may recycle the instance between
/// any two batches, creating a fresh one with `Default` and calling
/// `describe` again. Keep everything that must survive in host state
/// through [`Ctx`]; fields of the pack are for configuration and caches.
pub trait Pack: Default + 'static {
    /// Describes the pack; `config` holds the server admin's settings.
    fn describe(&mut self, config: &Config) -> Result<PackInfo, PackError>;

    /// Evaluates one batch of subscribed events, in event order.
    fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError>;
}

/// Why a pack gave up on a call. The host treats it like a trap: the
/// batch's writes and outcomes are discarded and the batch is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    BadConfig(String),
    Internal(String),
}

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackError::BadConfig(m) => write!(f, "bad config: {m}"),
            PackError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for PackError {}

/// The admin's settings for a pack, as (name, value) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Config {
        Config { entries }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric setting, `default` when absent; an unparsable value is a
    /// configuration error rather than a silent default.
    pub fn get_u64(&self, name: &str, default: u64) -> Result<u64, PackError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                PackError::BadConfig(format!("{name}: expected a whole number, got {v:?}"))
            }),
        }
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// Which events a pack receives. An event is delivered once if any of the
/// pack's subscriptions matches: its kind is listed and, when the lists are
/// not empty, its weapon and map are listed too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub kinds: Vec<EventKind>,
    pub weapons: Vec<String>,
    pub maps: Vec<String>,
}

impl Subscription {
    pub fn kinds(kinds: &[EventKind]) -> Subscription {
        Subscription {
            kinds: kinds.to_vec(),
            ..Subscription::default()
        }
    }

    pub fn weapons(mut self, weapons: &[&str]) -> Subscription {
        self.weapons = weapons.iter().map(|w| w.to_string()).collect();
        self
    }

    pub fn maps(mut self, maps: &[&str]) -> Subscription {
        self.maps = maps.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Whether an event with these fields is delivered.
    pub fn matches(&self, kind: EventKind, weapon: &str, map: &str) -> bool {
        self.kinds.contains(&kind)
            && (self.weapons.is_empty() || self.weapons.iter().any(|w| w == weapon))
            && (self.maps.is_empty() || self.maps.iter().any(|m| m == map))
    }
}

/// One achievement as the host lists it (the WIT `achievement` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchievementInfo {
    pub code: String,
    pub name: String,
    pub description: String,
    pub category: String,
    pub tier: u8,
    pub points: i32,
    pub icon: String,
    pub hidden: bool,
    pub target: u64,
}

/// What `describe` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    pub id: String,
    pub version: String,
    pub achievements: Vec<AchievementInfo>,
    pub subscriptions: Vec<Subscription>,
}

impl PackInfo {
    pub fn new(id: &str, version: &str) -> PackInfo {
        PackInfo {
            id: id.to_string(),
            version: version.to_string(),
            achievements: Vec::new(),
            subscriptions: Vec::new(),
        }
    }

    /// Adds every achievement of a declarative table.
    pub fn achievements(mut self, table: &[Achievement]) -> PackInfo {
        self.achievements
            .extend(table.iter().map(Achievement::info));
        self
    }

    pub fn achievement(mut self, info: AchievementInfo) -> PackInfo {
        self.achievements.push(info);
        self
    }

    pub fn subscribe(mut self, subscription: Subscription) -> PackInfo {
        self.subscriptions.push(subscription);
        self
    }

    /// Whether any subscription delivers an event with these fields.
    pub fn delivers(&self, kind: EventKind, weapon: &str, map: &str) -> bool {
        self.subscriptions
            .iter()
            .any(|s| s.matches(kind, weapon, map))
    }

    /// Checks what the host checks at load: a lower-case pack id without
    /// spaces, a version, at least one achievement and one subscription,
    /// event kinds in every subscription, and per achievement a code of 1
    /// to 128 bytes unique in the pack, a name, a tier from 1 to 10 and a
    /// target of at least 1. (The host also refuses a code another loaded
    /// pack declares.)
    pub fn validate(&self) -> Result<(), PackError> {
        let bad = |m: String| Err(PackError::BadConfig(m));
        if self.id.trim().is_empty()
            || self.id != self.id.to_lowercase()
            || self.id.chars().any(char::is_whitespace)
        {
            return bad(format!(
                "pack id {:?} must be lower case without spaces",
                self.id
            ));
        }
        if self.version.trim().is_empty() {
            return bad("empty version".to_string());
        }
        if self.achievements.is_empty() {
            return bad("the pack declares no achievements".to_string());
        }
        if self.subscriptions.is_empty() || self.subscriptions.iter().any(|s| s.kinds.is_empty()) {
            return bad("every pack needs a subscription, and each names event kinds".to_string());
        }
        let mut codes: Vec<&str> = Vec::with_capacity(self.achievements.len());
        for a in &self.achievements {
            if a.code.trim().is_empty() || a.name.trim().is_empty() {
                return bad(format!("achievement {:?} needs a code and a name", a.code));
            }
            if a.code.len() > 128 {
                return bad(format!(
                    "achievement code {:?} is longer than 128 bytes",
                    a.code
                ));
            }
            if codes.contains(&a.code.as_str()) {
                return bad(format!("achievement code {:?} is declared twice", a.code));
            }
            if !(1..=10).contains(&a.tier) {
                return bad(format!("{}: tier {} is not 1 to 10", a.code, a.tier));
            }
            if a.target == 0 {
                return bad(format!("{}: target must be at least 1", a.code));
            }
            codes.push(&a.code);
        }
        Ok(())
    }

    /// The declared achievement with this code.
    pub fn find(&self, code: &str) -> Option<&AchievementInfo> {
        self.achievements.iter().find(|a| a.code == code)
    }
}
