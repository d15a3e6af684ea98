//! The game's wire formats: body framing and field normalisation.
//!
//! Accepts what the real clients send (contract §1): a JSON array of flat
//! objects whose values are mostly strings, newline-delimited JSON objects,
//! and legacy URL-encoded lines, with every field spelling of §1.7. Each
//! event is decoded on its own, so one bad event is reported by index and
//! never costs the good ones beside it.
//!
//! [`flat`] parses one object into text fields, [`fields`] indexes them by
//! the names normalisation reads, and [`normalise`] maps them onto the
//! canonical event.

mod fields;
mod flat;
mod normalise;

use std::borrow::Cow;

use serde_json::Value;
use thiserror::Error;

use crate::event::{Event, Str};
use fields::Entry;
use flat::{FlatObject, Flattener};

pub use normalise::{GAME_RELATIVE_LIMIT_SECS, normalise, strip_colour_codes};

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

/// One item of a body: its fields as text (nested participant blocks
/// already flattened, duplicates resolved), and its original text.
#[derive(Debug, Clone)]
pub struct RawItem<'a> {
    entries: Vec<Entry<'a>>,
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
            entries: flat.0,
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
    if let Some(items) = split_array_of_objects(text) {
        return Ok(items);
    }
    // Elements are kept as raw text so that one element that is not an
    // object does not fail the whole array, and so the original is stored.
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| BodyError::InvalidArray(e.to_string()))?;
    Ok(items
        .into_iter()
        .map(|raw| parse_object_text(raw.get()))
        .collect())
}

/// An array whose elements are all objects (what the game sends), read in
/// one pass: each object is parsed where it stands and its text is the
/// span the parser consumed, instead of scanning every element once to
/// find it and again to parse it. None for anything else (an element that
/// is not an object, bad JSON), which [`split_array`] then reads element
/// by element to report precisely.
fn split_array_of_objects(text: &str) -> Option<Vec<Result<RawItem<'_>, EventError>>> {
    let bytes = text.as_bytes();
    let skip_ws = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut items = Vec::new();
    let mut pos = skip_ws(1);
    if bytes.get(pos) == Some(&b']') {
        return (skip_ws(pos + 1) == bytes.len()).then_some(items);
    }
    loop {
        let rest = &text[pos..];
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<FlatObject>();
        let flat = stream.next()?.ok()?;
        let end = pos + stream.byte_offset();
        items.push(Ok(RawItem {
            entries: flat.0,
            text: &text[pos..end],
        }));
        pos = skip_ws(end);
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(pos + 1),
            Some(b']') => break,
            _ => return None,
        }
    }
    (skip_ws(pos + 1) == bytes.len()).then_some(items)
}

fn parse_object_text(text: &str) -> Result<RawItem<'_>, EventError> {
    match serde_json::from_str::<FlatObject>(text) {
        Ok(flat) => Ok(RawItem {
            entries: flat.0,
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
    let mut flat = Flattener::default();
    for (k, v) in form_urlencoded::parse(line.as_bytes()) {
        flat.push_text(k, v);
    }
    RawItem {
        entries: flat.finish(),
        text: line,
    }
}

/// At most 64 bytes of a text, for error messages.
pub(crate) fn truncate(s: &str) -> String {
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

/// The outcome of decoding a whole body: good events and per-index errors.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub errors: Vec<(usize, EventError)>,
}

/// Splits and normalises a body.
pub fn decode_body(body: &[u8], ctx: &DecodeContext) -> Result<Decoded, BodyError> {
    let text = body_text(body)?;
    let items = split_body(&text)?;
    let mut out = Decoded {
        events: Vec::with_capacity(items.len()),
        errors: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
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
    use crate::EventKind;
    use crate::event::{Stance, Team};
    use proptest::strategy::Strategy;

    fn ctx() -> DecodeContext {
        DecodeContext {
            server_id: Str::from("srv-1"),
            received_ms: 1_700_000_000_000,
        }
    }

    const A1: &str = r#"[{"type":"player_kill","match_id":"no_match","session_id":"sess_f88106789e6e168b","timestamp":"9.8","attacker_name":"Daichi","attacker_guid":"unauth_39","attacker_team":"american","attacker_x":"-67.0411","attacker_y":"1504.86","attacker_z":"384.125","attacker_pitch":"0","attacker_yaw":"253.74","attacker_stance":"stand","victim_name":"Daichi","victim_guid":"unauth_39","victim_team":"american","victim_x":"-67.0411","victim_y":"1504.86","victim_z":"384.125","victim_pitch":"0","victim_yaw":"253.74","victim_stance":"stand","weapon":"grenade","damage":"112.487","hitloc":"general","mod":"grenade"}]"#;

    /// An event keeps only what its extra fields need, not the parser's
    /// buffer (events wait in queues and stores by the ten thousand).
    #[test]
    fn extra_fields_hold_no_spare_room() {
        let d = decode_body(A1.as_bytes(), &ctx()).unwrap();
        assert!(d.events[0].extra.is_empty());
        assert_eq!(d.events[0].extra.capacity(), 0);
        let body =
            br#"[{"type":"weapon_fire","player_guid":"g","ammo_remaining":"7","custom":"x"}]"#;
        let d = decode_body(body, &ctx()).unwrap();
        assert_eq!(d.events[0].extra.len(), 2);
        assert!(
            d.events[0].extra.capacity() < 8,
            "{}",
            d.events[0].extra.capacity()
        );
    }

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

    /// The element-by-element reading the one-pass split replaced.
    fn split_by_raw_values(text: &str) -> Vec<Result<RawItem<'_>, EventError>> {
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
        items
            .into_iter()
            .map(|raw| parse_object_text(raw.get()))
            .collect()
    }

    fn summary(items: &[Result<RawItem<'_>, EventError>]) -> Vec<Result<(String, usize), String>> {
        items
            .iter()
            .map(|i| match i {
                Ok(item) => Ok((item.text.to_string(), item.entries.len())),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    }

    proptest::proptest! {
        /// Arrays of objects, however spaced, split in one pass into the
        /// same items (text and fields) as element by element; anything
        /// else falls back to that reading.
        #[test]
        fn one_pass_split_equals_element_by_element(
            elements in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => "[a-z]{1,3}".prop_map(|k| format!(r#"{{"{k}":"v","type":"jump"}}"#)),
                    1 => proptest::strategy::Just(r#"{ "a" : [1, {"b":2}] }"#.to_string()),
                    1 => proptest::strategy::Just("42".to_string()),
                    1 => proptest::strategy::Just(r#""text""#.to_string()),
                ],
                0..6,
            ),
            spaces in proptest::collection::vec("[ \t\r\n]{0,2}", 14),
        ) {
            let mut body = format!("[{}", spaces[0]);
            for (i, e) in elements.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&spaces[(2 * i + 1) % 14]);
                body.push_str(e);
                body.push_str(&spaces[(2 * i + 2) % 14]);
            }
            body.push(']');
            let expected = summary(&split_by_raw_values(&body));
            proptest::prop_assert_eq!(summary(&split_array(&body).unwrap()), expected.clone());
            let all_objects = elements.iter().all(|e| e.starts_with('{'));
            let one_pass = split_array_of_objects(&body);
            proptest::prop_assert_eq!(one_pass.is_some(), all_objects);
            if let Some(items) = one_pass {
                proptest::prop_assert_eq!(summary(&items), expected);
            }
        }
    }

    #[test]
    fn colour_codes() {
        assert_eq!(strip_colour_codes("^1Red^7Name^"), "RedName^");
    }
}
