//! The game's wire formats: body framing and field normalisation.
//!
//! Accepts what the real clients send (contract §1): a JSON array of flat
//! objects whose values are mostly strings, newline-delimited JSON objects,
//! and legacy URL-encoded lines, with every field spelling of §1.7. Each
//! event is decoded on its own, so one bad event is reported by index and
//! never costs the good ones beside it.

use std::borrow::Cow;

use serde::Deserialize as _;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::EventKind;
use crate::event::{Event, Participant, Stance, Str, Team, Vec3, empty};

/// Values below this (2020-01-01 in Unix seconds) are game-relative
/// `level.time` seconds, as upstream decided.
pub const GAME_RELATIVE_LIMIT_SECS: f64 = 1_577_836_800.0;

/// Why a whole body could not be read.
#[derive(Debug, Error, PartialEq)]
pub enum BodyError {
    #[error("body is empty")]
    Empty,
    #[error("body is not UTF-8: {0}")]
    NotUtf8(String),
    #[error("invalid JSON array: {0}")]
    InvalidArray(String),
}

/// Why one event was rejected.
#[derive(Debug, Error, PartialEq, Clone)]
pub enum EventError {
    #[error("not a JSON object: {0}")]
    NotObject(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("field `type` is missing or empty")]
    MissingType,
    #[error("field `{field}`: {reason}")]
    BadField { field: String, reason: String },
}

/// Field text, borrowed from the body wherever the JSON string has no
/// escapes (nearly always): decoding allocated two strings per field
/// before, for fields most of which are parsed into numbers or dropped.
type Text<'a> = Cow<'a, str>;

/// One field: name and value (None once taken, or for JSON null).
type Entry<'a> = (Text<'a>, Option<Text<'a>>);

/// One item of a body: its fields as text, sorted by name (nested
/// participant blocks already flattened), and its original text.
#[derive(Debug, Clone)]
pub struct RawItem<'a> {
    fields: Vec<Entry<'a>>,
    pub text: &'a str,
}

/// A body as text: UTF-8, with the NUL bytes the game's string builder
/// can leave behind removed.
pub fn body_text(body: &[u8]) -> Result<Cow<'_, str>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8(e.to_string()))?;
    Ok(if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    })
}

/// Splits a body's text ([`body_text`]) into items. The body format is
/// sniffed as upstream does (a leading `[` is a JSON array, otherwise
/// lines), with the content type as a hint for lines.
pub fn split_body(text: &str) -> Result<Vec<Result<RawItem<'_>, EventError>>, BodyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BodyError::Empty);
    }
    if text.starts_with('[') {
        return split_array(text);
    }
    if text.starts_with('{') && !text.contains('\n') {
        return Ok(vec![parse_object_text(text)]);
    }
    // A pretty-printed single object is one JSON value spanning lines.
    if text.starts_with('{')
        && let Ok(flat) = serde_json::from_str::<FlatObject>(text)
    {
        return Ok(vec![Ok(RawItem {
            fields: flat.0,
            text,
        })]);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            if line.starts_with('{') {
                parse_object_text(line)
            } else {
                Ok(parse_urlencoded(line))
            }
        })
        .collect())
}

fn split_array(text: &str) -> Result<Vec<Result<RawItem<'_>, EventError>>, BodyError> {
    // Elements are kept as raw text so that one element that is not an
    // object does not fail the whole array, and so the original is stored.
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| BodyError::InvalidArray(e.to_string()))?;
    Ok(items
        .into_iter()
        .map(|raw| parse_object_text(raw.get()))
        .collect())
}

fn parse_object_text(text: &str) -> Result<RawItem<'_>, EventError> {
    match serde_json::from_str::<FlatObject>(text) {
        Ok(flat) => Ok(RawItem {
            fields: flat.0,
            text,
        }),
        // Off the hot path: say precisely what was wrong.
        Err(_) => match serde_json::from_str::<Value>(text) {
            Ok(other) => Err(EventError::NotObject(truncate(&other.to_string()))),
            Err(e) => Err(EventError::InvalidJson(e.to_string())),
        },
    }
}

fn parse_urlencoded(line: &str) -> RawItem<'_> {
    let mut fields = Vec::new();
    for (k, v) in form_urlencoded::parse(line.as_bytes()) {
        upsert(&mut fields, k, Some(v));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    RawItem { fields, text: line }
}

/// Sets a field, the later occurrence of a key winning (as JSON objects
/// decode).
fn upsert<'a, V>(fields: &mut Vec<(Text<'a>, V)>, key: Text<'a>, value: V) {
    match fields.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => fields.push((key, value)),
    }
}

/// A wire object parsed straight into flattened text fields, without an
/// intermediate `Value` tree: this runs for every event ingested. Keys are
/// in sorted order (bytewise) with the last duplicate winning, and nested
/// participant blocks (`{"attacker":{"guid":…}}`) become `attacker_guid`,
/// which upstream silently lost; where a block's fields and a top-level
/// field share a name, the block's comes first.
struct FlatObject<'a>(Vec<Entry<'a>>);

/// One top-level value: scalar text (None for null), or a participant
/// block's own fields.
enum FlatValue<'a> {
    Text(Option<Text<'a>>),
    Block(Vec<(String, Option<String>)>),
}

impl<'de> serde::Deserialize<'de> for FlatObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
            type Value = FlatObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FlatObject<'de>, A::Error> {
                let mut top: Vec<(Text<'de>, FlatValue<'de>)> = Vec::with_capacity(32);
                while let Some(key) = map.next_key_seed(TextSeed)? {
                    let block = is_participant_prefix(&key);
                    let value = map.next_value_seed(FieldSeed { block })?;
                    top.push((key, value));
                }
                // Stable: among equal keys the last one read stays last,
                // and only the last of each run is kept.
                top.sort_by(|a, b| a.0.cmp(&b.0));
                let mut fields = Vec::with_capacity(top.len() + 8);
                let mut blocks = false;
                let mut entries = top.into_iter().peekable();
                while let Some((k, v)) = entries.next() {
                    if entries.peek().is_some_and(|(next, _)| *next == k) {
                        continue;
                    }
                    match v {
                        FlatValue::Text(Some(t)) => fields.push((k, Some(t))),
                        FlatValue::Text(None) => {}
                        FlatValue::Block(inner) => {
                            blocks = true;
                            fields.extend(inner.into_iter().filter(|(_, v)| v.is_some()).map(
                                |(ik, iv)| (Cow::Owned(format!("{k}_{ik}")), iv.map(Cow::Owned)),
                            ))
                        }
                    }
                }
                if blocks {
                    // A block's names may sort after top-level names that
                    // follow its parent's; stable, so the block's stay first.
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                }
                Ok(FlatObject(fields))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// A JSON string (an object key), borrowed when it has no escapes.
struct TextSeed;

impl<'de> serde::de::DeserializeSeed<'de> for TextSeed {
    type Value = Text<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Text<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TextSeed {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Reads one value as text the way `scalar_text` renders a `Value`;
/// `block` turns an object into a participant block.
struct FieldSeed {
    block: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for FieldSeed {
    type Value = FlatValue<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FlatValue<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Owned text of a rendered scalar.
fn owned<'a>(s: String) -> FlatValue<'a> {
    FlatValue::Text(Some(Cow::Owned(s)))
}

impl<'de> serde::de::Visitor<'de> for FieldSeed {
    type Value = FlatValue<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<FlatValue<'de>, E> {
        Ok(FlatValue::Text(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<FlatValue<'de>, E> {
        Ok(owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<FlatValue<'de>, E> {
        Ok(owned(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<FlatValue<'de>, E> {
        Ok(owned(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<FlatValue<'de>, E> {
        Ok(owned(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<FlatValue<'de>, E> {
        Ok(owned(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<FlatValue<'de>, E> {
        // serde_json's own rendering ("1.0", not "1").
        Ok(owned(
            serde_json::Number::from_f64(v).map_or_else(|| "null".into(), |n| n.to_string()),
        ))
    }
    fn visit_unit<E>(self) -> Result<FlatValue<'de>, E> {
        Ok(FlatValue::Text(None))
    }
    fn visit_none<E>(self) -> Result<FlatValue<'de>, E> {
        Ok(FlatValue::Text(None))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<FlatValue<'de>, A::Error> {
        let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(owned(v.to_string()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<FlatValue<'de>, A::Error> {
        let v = Map::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        if !self.block {
            return Ok(owned(Value::Object(v).to_string()));
        }
        Ok(FlatValue::Block(
            v.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect(),
        ))
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        s.to_string()
    } else {
        let mut end = 64;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// Context the transport knows and the event may not carry.
#[derive(Debug, Clone)]
pub struct DecodeContext {
    /// The authenticated server; it overrides whatever the event claims.
    pub server_id: Str,
    /// Receive time, ms since the epoch; the fallback event time.
    pub received_ms: i64,
}

/// Fields that credentials arrive in on legacy lines; never stored.
const SECRET_FIELDS: &[&str] = &["server_token", "token", "auth_token"];

/// Normalises one wire object into the canonical event.
pub fn normalise(item: RawItem<'_>, ctx: &DecodeContext) -> Result<Event, EventError> {
    let mut fields = Fields {
        entries: item.fields,
    };
    let type_name = fields
        .take_str(&["type", "event_type", "event"])
        .filter(|t| !t.trim().is_empty())
        .ok_or(EventError::MissingType)?;
    let type_name = lowercase(type_name.trim());
    let kind = EventKind::from_wire(&type_name);

    let mut ev = Event::new(kind);
    ev.type_name = Str::from(&*type_name);
    ev.server = ctx.server_id.clone();
    fields.take_str(&["server_id"]);
    for secret in SECRET_FIELDS {
        fields.take_str(&[secret]);
    }

    match fields.take_str(&["timestamp", "time", "event_time"]) {
        Some(ts) => match parse_timestamp(&ts) {
            Some(Timestamp::Absolute(ms)) => ev.time_ms = ms,
            Some(Timestamp::GameRelative(ms)) => {
                ev.time_ms = ctx.received_ms;
                ev.game_time_ms = Some(ms);
            }
            None => return Err(bad("timestamp", format!("not a time: {}", truncate(&ts)))),
        },
        None => ev.time_ms = ctx.received_ms,
    }

    ev.session = fields.take_sym(&["session_id", "session"]);
    let match_id = fields.take_sym(&["match_id"]);
    if &*match_id != "no_match" {
        ev.match_id = match_id;
    }
    if let Some(round) = fields.take_number(&["round_number", "round"])? {
        ev.round = round.max(0.0) as u32;
    }
    ev.game_mode = fields.take_sym(&["gametype", "game_type", "game_mode"]);

    // Actor and target come from the first prefix present, in order.
    let (actor_prefixes, target_prefixes): (&[&str], &[&str]) = match kind {
        EventKind::PlayerTeamkill => (&["killer", "attacker", "player"], &["victim", "target"]),
        _ => (&["attacker", "killer", "player"], &["victim", "target"]),
    };
    ev.actor = take_participant(&mut fields, actor_prefixes)?;
    ev.target = take_participant(&mut fields, target_prefixes)?;

    let weapon_keys: &[&str] = match kind {
        EventKind::WeaponChange => &["new_weapon", "weapon"],
        EventKind::GrenadeThrow | EventKind::GrenadeExplode => &["weapon", "projectile"],
        _ => &["weapon"],
    };
    ev.weapon = fields.take_sym(weapon_keys);
    let mod_keys: &[&str] = match kind {
        EventKind::PlayerSuicide => &["mod", "means_of_death", "method"],
        _ => &["mod", "means_of_death"],
    };
    ev.means_of_death = normalise_mod(fields.take_str(mod_keys));
    ev.hit_location = normalise_hitloc(fields.take_str(&["hitloc", "hitlocation", "hit_location"]));
    if let Some(damage) = fields.take_number(&["damage"])? {
        ev.damage = damage as f32;
    }
    // On movement events `distance` is the player's cumulative distance,
    // not a kill distance: it stays an extra field there.
    if kind != EventKind::Distance
        && let Some(distance) = fields.take_number(&["distance"])?
    {
        ev.distance = distance as f32;
    }
    if let (Some(a), Some(t)) = (&ev.actor, &ev.target)
        && let (Some(pa), Some(pt)) = (a.position, t.position)
        && ev.distance == 0.0
        && a.guid != t.guid
    {
        ev.distance = pa.distance(&pt);
    }
    ev.map = fields.take_sym(&["map_name", "map", "current_map", "mapname"]);

    ev.extra = fields.into_extra();
    ev.raw = Some(Str::from(item.text));
    Ok(ev)
}

fn bad(field: &str, reason: impl Into<String>) -> EventError {
    EventError::BadField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

enum Timestamp {
    Absolute(i64),
    GameRelative(i64),
}

fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let t = s.trim();
    if let Ok(v) = t.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            return None;
        }
        return Some(if v < GAME_RELATIVE_LIMIT_SECS {
            Timestamp::GameRelative((v * 1000.0).round() as i64)
        } else if v > 1e12 {
            // Already milliseconds.
            Timestamp::Absolute(v as i64)
        } else {
            Timestamp::Absolute((v * 1000.0).round() as i64)
        });
    }
    parse_rfc3339(t).map(Timestamp::Absolute)
}

/// Minimal RFC 3339 parser ("2026-02-02T17:30:04Z", optional fraction and
/// offset), enough for the test material's timestamps.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_secs = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = o.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) - offset_secs) * 1000 + millis)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ASCII lower case, copying only when something changes.
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `MOD_PISTOL` (Bruno) and `pistol` (game) are the same means of death.
fn normalise_mod(s: Option<Text<'_>>) -> Str {
    let Some(s) = s else { return empty() };
    let lower = lowercase(s.trim());
    let name = lower.strip_prefix("mod_").unwrap_or(&lower);
    if name.is_empty() {
        empty()
    } else {
        Str::from(name)
    }
}

fn normalise_hitloc(s: Option<Text<'_>>) -> Str {
    let Some(s) = s else { return empty() };
    let lower = lowercase(s.trim());
    if lower.is_empty() {
        empty()
    } else if lower.contains(' ') {
        Str::from(lower.replace(' ', "_").as_str())
    } else {
        Str::from(&*lower)
    }
}

/// Removes Quake-style colour codes (`^1Name` → `Name`), copying only
/// when the name has a `^`.
pub fn strip_colour_codes(name: &str) -> Cow<'_, str> {
    if !name.contains('^') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '^'
            && let Some(next) = chars.peek()
            && next.is_ascii_alphanumeric()
        {
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

fn take_participant(
    fields: &mut Fields,
    prefixes: &[&str],
) -> Result<Option<Participant>, EventError> {
    for prefix in prefixes {
        if let Some(p) = take_participant_with(fields, prefix)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn take_participant_with(fields: &mut Fields, p: &str) -> Result<Option<Participant>, EventError> {
    let key = |suffix| Key::Part(p, suffix);
    let guid = fields
        .take_key(key("guid"))
        .or_else(|| fields.take_key(key("id")));
    let smf_id_text = fields.take_key(key("smf_id"));
    let smf_id = match smf_id_text.as_deref().map(str::trim) {
        None | Some("") | Some("0") => None,
        Some(t) => Some(
            t.parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .map(|v| v as u64)
                .ok_or_else(|| bad(&key("smf_id").name(), "expected a member number"))?,
        ),
    };
    let guid: Str = match (guid.filter(|g| !g.trim().is_empty()), smf_id) {
        (Some(g), _) => Str::from(g.trim()),
        (None, Some(id)) => Str::from(id.to_string().as_str()),
        (None, None) => {
            // No identity: leave the rest of the block as extra fields.
            return Ok(None);
        }
    };
    let mut part = Participant::new(guid);
    part.smf_id = smf_id;
    if let Some(name) = fields.take_key(key("name")) {
        part.name = Str::from(&*strip_colour_codes(&name));
    }
    if let Some(team) = fields.take_key(key("team")) {
        part.team = Team::parse(&team);
    }
    // The player block also comes as pos_x/aim_pitch (contract 1.7).
    let (pos_x, pos_y, pos_z, aim_p, aim_y) = if p == "player" {
        ("pos_x", "pos_y", "pos_z", "aim_pitch", "aim_yaw")
    } else {
        ("", "", "", "", "")
    };
    let x = fields.take_number_keys(&[key("x"), Key::Plain(pos_x)])?;
    let y = fields.take_number_keys(&[key("y"), Key::Plain(pos_y)])?;
    let z = fields.take_number_keys(&[key("z"), Key::Plain(pos_z)])?;
    if let (Some(x), Some(y), Some(z)) = (x, y, z) {
        part.position = Some(Vec3 {
            x: x as f32,
            y: y as f32,
            z: z as f32,
        });
    }
    if let Some(v) = fields.take_number_keys(&[key("pitch"), Key::Plain(aim_p)])? {
        part.pitch = v as f32;
    }
    if let Some(v) = fields.take_number_keys(&[key("yaw"), Key::Plain(aim_y)])? {
        part.yaw = v as f32;
    }
    if let Some(s) = fields.take_key(key("stance")) {
        part.stance = Stance::parse(&s);
    }
    if let Some(h) = fields.take_number_keys(&[key("health"), key("hp")])? {
        part.health = Some(h as i32);
    }
    Ok(Some(part))
}

/// The object's fields as text, sorted by name, consumed as they are
/// mapped; what is left becomes the extra fields.
struct Fields<'a> {
    entries: Vec<Entry<'a>>,
}

/// A field name to look up: plain, or a participant prefix and suffix
/// (`attacker` + `guid` is `attacker_guid`), compared without building the
/// name: decoding runs this for every field of every event.
#[derive(Clone, Copy)]
enum Key<'a> {
    Plain(&'a str),
    Part(&'a str, &'a str),
}

impl Key<'_> {
    fn matches(self, k: &str) -> bool {
        match self {
            Key::Plain(name) => k == name,
            Key::Part(prefix, suffix) => {
                k.len() == prefix.len() + 1 + suffix.len()
                    && k.starts_with(prefix)
                    && k.as_bytes()[prefix.len()] == b'_'
                    && k.ends_with(suffix)
            }
        }
    }

    fn is_empty(self) -> bool {
        matches!(self, Key::Plain(""))
    }

    fn name(self) -> String {
        match self {
            Key::Plain(name) => name.to_string(),
            Key::Part(prefix, suffix) => format!("{prefix}_{suffix}"),
        }
    }
}

impl<'a> Fields<'a> {
    fn take_str(&mut self, keys: &[&str]) -> Option<Text<'a>> {
        keys.iter().find_map(|k| self.take_key(Key::Plain(k)))
    }

    /// The first untaken field of that name (a participant block's before
    /// a top-level field of the same name). A scan, not a binary search:
    /// most names differ in length from the one looked up, which rejects
    /// them at once, and comparing for order cost more than the scan.
    fn take_key(&mut self, key: Key) -> Option<Text<'a>> {
        if key.is_empty() {
            return None;
        }
        self.entries
            .iter_mut()
            .find(|(k, v)| v.is_some() && key.matches(k))
            .and_then(|entry| entry.1.take())
    }

    fn take_sym(&mut self, keys: &[&str]) -> Str {
        match self.take_str(keys) {
            Some(s) if !s.trim().is_empty() => Str::from(s.trim()),
            _ => empty(),
        }
    }

    fn take_number(&mut self, keys: &[&str]) -> Result<Option<f64>, EventError> {
        for key in keys {
            if let Some(v) = self.take_number_key(Key::Plain(key)) {
                return v;
            }
        }
        Ok(None)
    }

    /// None when the field is absent; otherwise the number, nothing for an
    /// empty value, or why it is not a number.
    fn take_number_key(&mut self, key: Key) -> Option<Result<Option<f64>, EventError>> {
        let text = self.take_key(key)?;
        let t = text.trim();
        if t.is_empty() {
            return Some(Ok(None));
        }
        Some(
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        &key.name(),
                        format!("expected a number, got {:?}", truncate(t)),
                    )
                }),
        )
    }

    /// The first of `keys` present, as a number.
    fn take_number_keys(&mut self, keys: &[Key]) -> Result<Option<f64>, EventError> {
        for key in keys {
            if let Some(v) = self.take_number_key(*key) {
                return v;
            }
        }
        Ok(None)
    }

    fn into_extra(self) -> Vec<(Str, Str)> {
        self.entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (Str::from(&*k), Str::from(&*v))))
            .collect()
    }
}

fn is_participant_prefix(k: &str) -> bool {
    matches!(k, "attacker" | "victim" | "player" | "target" | "killer")
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// The outcome of decoding a whole body: good events and per-index errors.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub errors: Vec<(usize, EventError)>,
}

/// Splits and normalises a body.
pub fn decode_body(body: &[u8], ctx: &DecodeContext) -> Result<Decoded, BodyError> {
    let text = body_text(body)?;
    let mut out = Decoded::default();
    for (index, item) in split_body(&text)?.into_iter().enumerate() {
        match item.and_then(|item| normalise(item, ctx)) {
            Ok(ev) => out.events.push(ev),
            Err(e) => out.errors.push((index, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DecodeContext {
        DecodeContext {
            server_id: Str::from("srv-1"),
            received_ms: 1_700_000_000_000,
        }
    }

    const A1: &str = r#"[{"type":"player_kill","match_id":"no_match","session_id":"sess_f88106789e6e168b","timestamp":"9.8","attacker_name":"Daichi","attacker_guid":"unauth_39","attacker_team":"american","attacker_x":"-67.0411","attacker_y":"1504.86","attacker_z":"384.125","attacker_pitch":"0","attacker_yaw":"253.74","attacker_stance":"stand","victim_name":"Daichi","victim_guid":"unauth_39","victim_team":"american","victim_x":"-67.0411","victim_y":"1504.86","victim_z":"384.125","victim_pitch":"0","victim_yaw":"253.74","victim_stance":"stand","weapon":"grenade","damage":"112.487","hitloc":"general","mod":"grenade"}]"#;

    #[test]
    fn decodes_the_captured_kill() {
        let d = decode_body(A1.as_bytes(), &ctx()).unwrap();
        assert!(d.errors.is_empty());
        let ev = &d.events[0];
        assert_eq!(ev.kind, EventKind::PlayerKill);
        assert_eq!(&*ev.match_id, "");
        assert_eq!(&*ev.session, "sess_f88106789e6e168b");
        assert_eq!(ev.game_time_ms, Some(9800));
        let a = ev.actor.as_ref().unwrap();
        assert_eq!(&*a.guid, "unauth_39");
        assert_eq!(a.team, Team::Allies);
        assert_eq!(a.position.unwrap().y, 1504.86);
        assert_eq!(a.stance, Stance::Stand);
        assert_eq!(&*ev.weapon, "grenade");
        assert_eq!(&*ev.means_of_death, "grenade");
        assert_eq!(&*ev.hit_location, "general");
        assert!((ev.damage - 112.487).abs() < 1e-3);
        assert!(ev.extra.is_empty(), "{:?}", ev.extra);
        assert_eq!(ev.raw.as_deref().unwrap(), &A1[1..A1.len() - 1]);
    }

    #[test]
    fn one_bad_event_does_not_lose_the_others() {
        let body = r#"[{"type":"jump","player_guid":"1"},{"type":"player_kill","damage":"lots"},42,{"nope":1},{"type":"crouch","player_guid":"2"}]"#;
        let d = decode_body(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(d.events.len(), 2);
        let idx: Vec<usize> = d.errors.iter().map(|e| e.0).collect();
        assert_eq!(idx, vec![1, 2, 3]);
        assert!(d.errors[0].1.to_string().contains("damage"));
    }

    #[test]
    fn legacy_urlencoded_lines() {
        let body = "type=player_kill&match_id=no_match&timestamp=73.6&map_name=obj/obj_team2&attacker_guid=42&attacker_smf_id=42&attacker_team=allies&victim_guid=unauth_3&hitlocation=head&mod=bullet&server_token=secret&server_id=x\ntype=weapon_fire&player_guid=7&weapon=Thompson&ammo_remaining=29";
        let d = decode_body(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(d.events.len(), 2);
        let k = &d.events[0];
        assert_eq!(&*k.hit_location, "head");
        assert_eq!(&*k.means_of_death, "bullet");
        assert_eq!(&*k.map, "obj/obj_team2");
        assert_eq!(k.actor.as_ref().unwrap().smf_id, Some(42));
        assert!(k.extra("server_token").is_none());
        assert_eq!(d.events[1].extra("ammo_remaining"), Some("29"));
    }

    #[test]
    fn ndjson_with_nested_blocks_and_iso_time() {
        let body = "{\"type\":\"player_kill\",\"timestamp\":\"2026-02-02T17:30:04Z\",\"match_id\":\"m1\",\"attacker\":{\"guid\":\"test_p1\",\"name\":\"^1Player1\"},\"victim\":{\"guid\":\"test_p2\"},\"weapon\":\"M1 Garand\",\"hitloc\":\"head\"}\n{\"type\":\"mystery\",\"player_guid\":\"9\",\"foo\":\"bar\"}";
        let d = decode_body(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(d.events.len(), 2);
        let k = &d.events[0];
        assert_eq!(k.time_ms, 1_770_053_404_000);
        assert_eq!(&*k.actor.as_ref().unwrap().name, "Player1");
        assert_eq!(&*k.target.as_ref().unwrap().guid, "test_p2");
        assert_eq!(d.events[1].kind, EventKind::Other);
        assert_eq!(&*d.events[1].type_name, "mystery");
        assert_eq!(d.events[1].extra("foo"), Some("bar"));
    }

    #[test]
    fn bruno_native_types_and_mod_names() {
        let body = r#"[{"type":"player_kill","match_id":"m","timestamp":1738540800.0,"attacker_guid":"g","victim_guid":"victim_abc123","weapon":"Colt 45","damage":100,"hitloc":"head","mod":"MOD_PISTOL","distance":15.5}]"#;
        let d = decode_body(body.as_bytes(), &ctx()).unwrap();
        let k = &d.events[0];
        assert_eq!(k.time_ms, 1_738_540_800_000);
        assert_eq!(&*k.means_of_death, "pistol");
        assert_eq!(k.distance, 15.5);
        assert!(k.is_headshot());
    }

    #[test]
    fn field_spellings_from_the_script() {
        let body = r#"[{"type":"player_teamkill","killer_guid":"1","victim_guid":"2"},{"type":"weapon_change","player_guid":"1","old_weapon":"none","new_weapon":"Thompson"},{"type":"distance","player_guid":"1","distance":1534.2,"walked":42.7},{"type":"player_suicide","player_guid":"5","method":"MOD_FALLING"}]"#;
        let d = decode_body(body.as_bytes(), &ctx()).unwrap();
        assert_eq!(&*d.events[0].actor.as_ref().unwrap().guid, "1");
        assert_eq!(&*d.events[1].weapon, "Thompson");
        assert_eq!(d.events[1].extra("old_weapon"), Some("none"));
        assert_eq!(d.events[2].distance, 0.0);
        assert_eq!(d.events[2].extra_f64("walked"), Some(42.7));
        assert_eq!(&*d.events[3].actor.as_ref().unwrap().guid, "5");
        assert_eq!(&*d.events[3].means_of_death, "falling");
    }

    #[test]
    fn body_errors() {
        assert_eq!(split_body("  ").unwrap_err(), BodyError::Empty);
        assert!(matches!(
            body_text(b"\xff[]").unwrap_err(),
            BodyError::NotUtf8(_)
        ));
        assert!(matches!(
            split_body("[{\"type\":").unwrap_err(),
            BodyError::InvalidArray(_)
        ));
        let nul = b"[{\"type\":\"jump\",\"player_guid\":\"1\"}]\0\0";
        assert_eq!(decode_body(nul, &ctx()).unwrap().events.len(), 1);
    }

    #[test]
    fn pretty_printed_single_object() {
        let body = "{\n  \"type\": \"player_kill\",\n  \"attacker_guid\": \"1\"\n}";
        assert_eq!(
            decode_body(body.as_bytes(), &ctx()).unwrap().events.len(),
            1
        );
    }

    #[test]
    fn colour_codes() {
        assert_eq!(strip_colour_codes("^1Red^7Name^"), "RedName^");
    }

    /// The reference: parse into a `Value` tree, then flatten it (what the
    /// streaming parser replaced).
    fn flatten_via_value(text: &str) -> Option<Vec<(String, Option<String>)>> {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let mut entries = Vec::new();
        for (k, v) in &object {
            match v {
                Value::Object(inner) if is_participant_prefix(k) => {
                    for (ik, iv) in inner {
                        if let Some(s) = scalar_text(iv) {
                            entries.push((format!("{k}_{ik}"), Some(s)));
                        }
                    }
                }
                other => {
                    if let Some(s) = scalar_text(other) {
                        entries.push((k.clone(), Some(s)));
                    }
                }
            }
        }
        // A block's fields are sorted in with the rest; stable, so
        // duplicates keep their order.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Some(entries)
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            Just(Value::from(1.0)),
            "[a-z_0-9 ^\\\"é]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::vec(
                    (prop_oneof![Just("guid".to_string()), "[a-z]{1,4}"], inner),
                    0..4
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The streaming parser gives exactly the fields the `Value` route
        /// gives: same keys, order, duplicates resolution and renderings.
        #[test]
        fn streaming_flatten_equals_value_flatten(
            entries in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("attacker".to_string()),
                        proptest::strategy::Just("attacker_guid".to_string()),
                        proptest::strategy::Just("victim".to_string()),
                        proptest::strategy::Just("type".to_string()),
                        "[a-z_]{1,6}",
                    ],
                    json_value(),
                ),
                0..10,
            )
        ) {
            // Written by hand so duplicate keys reach the parser.
            let body = format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let streamed: Vec<(String, Option<String>)> =
                serde_json::from_str::<FlatObject>(&body)
                    .unwrap()
                    .0
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.map(Cow::into_owned)))
                    .collect();
            proptest::prop_assert_eq!(Some(streamed), flatten_via_value(&body));
        }
    }
}
