//! One wire object parsed straight into flat text fields, without an
//! intermediate `Value` tree: this runs for every event ingested.
//!
//! Duplicate keys resolve as JSON objects decode (the last one wins), and
//! nested participant blocks (`{"attacker":{"guid":…}}`) become
//! `attacker_guid`, which upstream silently lost.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::fields::{Entry, NO_SLOT, Role, SLOTS, Slot, Text, slot_bit, slot_of};

/// An object's fields in document order, duplicates resolved.
pub(super) struct FlatObject<'a>(pub Vec<Entry<'a>>);

/// One top-level value: scalar text (None for null), or a participant
/// block's own fields.
enum FlatValue<'a> {
    Text(Option<Text<'a>>),
    Block(Vec<(String, Option<String>)>),
}

/// Above this many unslotted names, duplicates are found with a hash set
/// instead of by comparing each name with those before it.
const SCAN_LIMIT: usize = 32;

/// Bit of a participant-prefix key (`attacker`, as a block or not) in the
/// set of names seen, after the slots.
fn role_bit(role: Role) -> u128 {
    slot_bit(FIRST_ROLE_BIT + role as u8)
}

const FIRST_ROLE_BIT: Slot = 128 - Role::ALL.len() as Slot;
const _: () = assert!(SLOTS <= FIRST_ROLE_BIT as usize);

/// Builds an object's entries as its fields are read, resolving duplicate
/// names as JSON objects decode: the last one wins, a block included.
#[derive(Default)]
pub(super) struct Flattener<'a> {
    entries: Vec<Entry<'a>>,
    /// Slots and participant prefixes seen.
    seen: u128,
    /// Other names seen, once there are too many to compare one by one.
    others: Option<HashSet<Text<'a>, foldhash::fast::FixedState>>,
    other_count: usize,
}

impl<'a> Flattener<'a> {
    pub(super) fn with_capacity(n: usize) -> Self {
        Flattener {
            entries: Vec::with_capacity(n),
            ..Flattener::default()
        }
    }

    /// Whether `key` was seen before (it is seen now).
    fn seen_before(&mut self, key: &Text<'a>, slot: Slot, role: Option<Role>) -> bool {
        let bit = match (slot, role) {
            (NO_SLOT, Some(role)) => role_bit(role),
            (NO_SLOT, None) => return self.other_seen_before(key),
            (slot, _) => slot_bit(slot),
        };
        let before = self.seen & bit != 0;
        self.seen |= bit;
        before
    }

    fn other_seen_before(&mut self, key: &Text<'a>) -> bool {
        self.other_count += 1;
        if self.others.is_none() && self.other_count > SCAN_LIMIT {
            // Nulls are not kept as entries, but a null seen before a
            // later value changes nothing: the later value is pushed
            // either way.
            let kept = self
                .entries
                .iter()
                .filter(|e| !e.block && e.slot == NO_SLOT);
            self.others = Some(kept.map(|e| e.key.clone()).collect());
        }
        match &mut self.others {
            Some(set) => !set.insert(key.clone()),
            None => self
                .entries
                .iter()
                .any(|e| !e.block && e.slot == NO_SLOT && e.key == *key),
        }
    }

    /// Adds a top-level field (`role`: its key is a participant prefix).
    fn push(&mut self, key: Text<'a>, slot: Slot, role: Option<Role>, value: FlatValue<'a>) {
        if self.seen_before(&key, slot, role) {
            // Rare (hand-written or hostile input): drop what the earlier
            // field of that name left.
            self.entries.retain(|e| match (e.block, role) {
                (false, _) => e.key != key,
                (true, Some(role)) => !is_block_field_of(&e.key, role),
                (true, None) => true,
            });
        }
        match value {
            FlatValue::Text(Some(v)) => self.entries.push(Entry::new(key, slot, v, false)),
            FlatValue::Text(None) => {}
            FlatValue::Block(inner) => {
                self.entries
                    .extend(inner.into_iter().filter_map(|(ik, iv)| {
                        let name = format!("{key}_{ik}");
                        let slot = slot_of(&name);
                        Some(Entry::new(Cow::Owned(name), slot, Cow::Owned(iv?), true))
                    }))
            }
        }
    }

    /// Adds a top-level text field (URL-encoded lines have nothing else).
    pub(super) fn push_text(&mut self, key: Text<'a>, value: Text<'a>) {
        let (slot, role) = classify(&key);
        self.push(key, slot, role, FlatValue::Text(Some(value)));
    }

    pub(super) fn finish(self) -> Vec<Entry<'a>> {
        self.entries
    }
}

/// A top-level name's slot, or else whether it is a participant prefix
/// (whose object value is a block).
fn classify(key: &str) -> (Slot, Option<Role>) {
    match slot_of(key) {
        NO_SLOT => (NO_SLOT, Role::of_block(key)),
        slot => (slot, None),
    }
}

/// Whether a flattened name came from that participant's block.
fn is_block_field_of(name: &str, role: Role) -> bool {
    name.strip_prefix(role.text())
        .is_some_and(|rest| rest.starts_with('_'))
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
                let mut flat = Flattener::with_capacity(36);
                while let Some(key) = map.next_key_seed(TextSeed)? {
                    let (slot, role) = classify(&key);
                    let value = map.next_value_seed(FieldSeed {
                        block: role.is_some(),
                    })?;
                    flat.push(key, slot, role, value);
                }
                Ok(FlatObject(flat.finish()))
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

pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::sort_by_name;
    use super::*;

    /// The reference: parse into a `Value` tree, then flatten it (what the
    /// streaming parser replaced), sorted by name with a block's fields
    /// first among equal names.
    fn flatten_via_value(text: &str) -> Option<Vec<(String, String)>> {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let mut entries = Vec::new();
        for (k, v) in &object {
            match v {
                Value::Object(inner) if Role::of_block(k).is_some() => {
                    for (ik, iv) in inner {
                        if let Some(s) = scalar_text(iv) {
                            entries.push((format!("{k}_{ik}"), s));
                        }
                    }
                }
                other => {
                    if let Some(s) = scalar_text(other) {
                        entries.push((k.clone(), s));
                    }
                }
            }
        }
        // The map iterates in name order and a block's names follow its
        // own; stable, so a block's field stays before an equal name.
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

    fn key() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            Just("attacker".to_string()),
            Just("attacker_guid".to_string()),
            Just("victim".to_string()),
            Just("type".to_string()),
            "[a-z_]{1,6}",
        ]
    }

    proptest::proptest! {
        /// The streaming parser gives exactly the fields the `Value` route
        /// gives: same keys, duplicates resolution and renderings; and
        /// every field knows its slot.
        #[test]
        fn streaming_flatten_equals_value_flatten(
            entries in proptest::collection::vec((key(), json_value()), 0..10),
            padding in 0usize..60,
        ) {
            // Written by hand so duplicate keys reach the parser; padding
            // crosses the limit where duplicates are found with a hash set.
            let body = format!(
                "{{{}}}",
                (0..padding)
                    .map(|i| format!("\"pad{i}\":\"{i}\""))
                    .chain(entries.iter().map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v)))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let mut streamed = serde_json::from_str::<FlatObject>(&body).unwrap().0;
            for e in &streamed {
                proptest::prop_assert_eq!(e.slot, slot_of(&e.key));
            }
            sort_by_name(&mut streamed);
            let streamed: Vec<(String, String)> = streamed
                .into_iter()
                .map(|e| (e.key.into_owned(), e.value.unwrap().into_owned()))
                .collect();
            proptest::prop_assert_eq!(Some(streamed), flatten_via_value(&body));
        }
    }
}
