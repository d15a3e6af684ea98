//! Mapping a wire object's fields onto the canonical event: every
//! spelling of contract §1.7, participants, times, weapons and means of
//! death. What no rule reads stays as extra fields.

use std::borrow::Cow;

use super::fields::{Attr, Fields, Name, Plain, Role, Text};
use super::{DecodeContext, EventError, RawItem, truncate};
use crate::EventKind;
use crate::event::{Event, Participant, Stance, Str, Team, Vec3, empty};

/// Values below this (2020-01-01 in Unix seconds) are game-relative
/// `level.time` seconds, as upstream decided.
pub const GAME_RELATIVE_LIMIT_SECS: f64 = 1_577_836_800.0;

/// Fields that credentials arrive in on legacy lines; never stored.
const SECRET_FIELDS: [Plain; 3] = [Plain::ServerToken, Plain::Token, Plain::AuthToken];

/// Normalises one wire object into the canonical event.
pub fn normalise(item: RawItem<'_>, ctx: &DecodeContext) -> Result<Event, EventError> {
    let mut fields = Fields::new(item.entries);
    let type_name = fields
        .take_str(&[Plain::Type, Plain::EventType, Plain::Event])
        .filter(|t| !t.trim().is_empty())
        .ok_or(EventError::MissingType)?;
    let type_name = lowercase(type_name.trim());
    let kind = EventKind::from_wire(&type_name);

    let mut ev = Event::new(kind);
    ev.type_name = Str::from(&*type_name);
    ev.server = ctx.server_id.clone();
    fields.take_str(&[Plain::ServerId]);
    for secret in SECRET_FIELDS {
        fields.take_str(&[secret]);
    }

    match fields.take_str(&[Plain::Timestamp, Plain::Time, Plain::EventTime]) {
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

    ev.session = fields.take_sym(&[Plain::SessionId, Plain::Session]);
    let match_id = fields.take_sym(&[Plain::MatchId]);
    if &*match_id != "no_match" {
        ev.match_id = match_id;
    }
    if let Some(round) = fields.take_number(&[Plain::RoundNumber, Plain::Round])? {
        ev.round = round.max(0.0) as u32;
    }
    ev.game_mode = fields.take_sym(&[Plain::Gametype, Plain::GameType, Plain::GameMode]);

    // Actor and target come from the first prefix present, in order.
    let (actor_roles, target_roles): (&[Role], &[Role]) = match kind {
        EventKind::PlayerTeamkill => (
            &[Role::Killer, Role::Attacker, Role::Player],
            &[Role::Victim, Role::Target],
        ),
        _ => (
            &[Role::Attacker, Role::Killer, Role::Player],
            &[Role::Victim, Role::Target],
        ),
    };
    ev.actor = take_participant(&mut fields, actor_roles)?;
    ev.target = take_participant(&mut fields, target_roles)?;

    let weapon_keys: &[Plain] = match kind {
        EventKind::WeaponChange => &[Plain::NewWeapon, Plain::Weapon],
        EventKind::GrenadeThrow | EventKind::GrenadeExplode => &[Plain::Weapon, Plain::Projectile],
        _ => &[Plain::Weapon],
    };
    ev.weapon = fields.take_sym(weapon_keys);
    let mod_keys: &[Plain] = match kind {
        EventKind::PlayerSuicide => &[Plain::Mod, Plain::MeansOfDeath, Plain::Method],
        _ => &[Plain::Mod, Plain::MeansOfDeath],
    };
    ev.means_of_death = normalise_mod(fields.take_str(mod_keys));
    ev.hit_location =
        normalise_hitloc(fields.take_str(&[Plain::Hitloc, Plain::Hitlocation, Plain::HitLocation]));
    if let Some(damage) = fields.take_number(&[Plain::Damage])? {
        ev.damage = damage as f32;
    }
    // On movement events `distance` is the player's cumulative distance,
    // not a kill distance: it stays an extra field there.
    if kind != EventKind::Distance
        && let Some(distance) = fields.take_number(&[Plain::Distance])?
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
    ev.map = fields.take_sym(&[
        Plain::MapName,
        Plain::Map,
        Plain::CurrentMap,
        Plain::Mapname,
    ]);

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
    roles: &[Role],
) -> Result<Option<Participant>, EventError> {
    for &role in roles {
        if let Some(p) = take_participant_with(fields, role)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

fn take_participant_with(
    fields: &mut Fields,
    role: Role,
) -> Result<Option<Participant>, EventError> {
    let key = |attr| Name::Part(role, attr);
    let guid = fields
        .take(key(Attr::Guid))
        .or_else(|| fields.take(key(Attr::Id)));
    let smf_id_text = fields.take(key(Attr::SmfId));
    let smf_id = match smf_id_text.as_deref().map(str::trim) {
        None | Some("") | Some("0") => None,
        Some(t) => Some(
            t.parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0 && v.fract() == 0.0)
                .map(|v| v as u64)
                .ok_or_else(|| bad(&key(Attr::SmfId).text(), "expected a member number"))?,
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
    if let Some(name) = fields.take(key(Attr::Name)) {
        part.name = Str::from(&*strip_colour_codes(&name));
    }
    if let Some(team) = fields.take(key(Attr::Team)) {
        part.team = Team::parse(&team);
    }
    // The player block also comes as pos_x/aim_pitch (contract 1.7).
    let also = |plain| (role == Role::Player).then_some(Name::Plain(plain));
    let x = fields.take_number_of(key(Attr::X), also(Plain::PosX))?;
    let y = fields.take_number_of(key(Attr::Y), also(Plain::PosY))?;
    let z = fields.take_number_of(key(Attr::Z), also(Plain::PosZ))?;
    if let (Some(x), Some(y), Some(z)) = (x, y, z) {
        part.position = Some(Vec3 {
            x: x as f32,
            y: y as f32,
            z: z as f32,
        });
    }
    if let Some(v) = fields.take_number_of(key(Attr::Pitch), also(Plain::AimPitch))? {
        part.pitch = v as f32;
    }
    if let Some(v) = fields.take_number_of(key(Attr::Yaw), also(Plain::AimYaw))? {
        part.yaw = v as f32;
    }
    if let Some(s) = fields.take(key(Attr::Stance)) {
        part.stance = Stance::parse(&s);
    }
    if let Some(h) = fields.take_number_of(key(Attr::Health), Some(key(Attr::Hp)))? {
        part.health = Some(h as i32);
    }
    Ok(Some(part))
}

/// Typed reads over [`Fields`], each in an order of preference.
impl<'a> Fields<'a> {
    fn take_str(&mut self, names: &[Plain]) -> Option<Text<'a>> {
        names.iter().find_map(|&n| self.take(Name::Plain(n)))
    }

    fn take_sym(&mut self, names: &[Plain]) -> Str {
        match self.take_str(names) {
            Some(s) if !s.trim().is_empty() => Str::from(s.trim()),
            _ => empty(),
        }
    }

    fn take_number(&mut self, names: &[Plain]) -> Result<Option<f64>, EventError> {
        self.first_number(names.iter().map(|&n| Name::Plain(n)))
    }

    /// `name` as a number, or else `fallback`.
    fn take_number_of(
        &mut self,
        name: Name,
        fallback: Option<Name>,
    ) -> Result<Option<f64>, EventError> {
        self.first_number(std::iter::once(name).chain(fallback))
    }

    /// The first of `names` present, as a number.
    fn first_number(
        &mut self,
        names: impl IntoIterator<Item = Name>,
    ) -> Result<Option<f64>, EventError> {
        for name in names {
            if let Some(v) = self.take_number_named(name) {
                return v;
            }
        }
        Ok(None)
    }

    /// None when the field is absent; otherwise the number, nothing for an
    /// empty value, or why it is not a number.
    fn take_number_named(&mut self, name: Name) -> Option<Result<Option<f64>, EventError>> {
        let text = self.take(name)?;
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
                        &name.text(),
                        format!("expected a number, got {:?}", truncate(t)),
                    )
                }),
        )
    }
}
