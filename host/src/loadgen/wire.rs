//! The game's wire format, written directly as the simulation builds each
//! event: flat JSON objects in the order the script sets their fields,
//! every value a string (movement values excepted), batched into a JSON
//! array.
//!
//! Why not `serde_json::Map`: the load generator shares the machine with
//! the server it measures, so every microsecond it spends per event is
//! taken from the server. Building a map of owned keys and values per event
//! and formatting floats with exact decimal rounding cost it about 7 µs of
//! CPU per event; writing the bytes once costs a fraction of that.

use std::fmt::Write as _;

/// One event being written: an open JSON object.
#[derive(Debug, Clone)]
pub struct GameEvent {
    json: String,
}

impl GameEvent {
    pub fn new(kind: &str) -> GameEvent {
        let mut e = GameEvent {
            json: String::with_capacity(384),
        };
        e.json.push('{');
        e.text("type", kind);
        e
    }

    fn key(&mut self, key: &str) {
        if self.json.len() > 1 {
            self.json.push(',');
        }
        // Keys are the script's field names: plain identifiers.
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        self.json.push('"');
        self.json.push_str(key);
        self.json.push_str("\":");
    }

    /// A string value, escaped.
    pub fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        push_json_str(&mut self.json, value);
    }

    /// An integer, as the script's string cast prints it.
    pub fn int(&mut self, key: &str, value: impl Into<i64>) {
        self.key(key);
        self.json.push('"');
        self.json.push_str(itoa::Buffer::new().format(value.into()));
        self.json.push('"');
    }

    /// A float, as the script's string cast prints it: at most three
    /// decimals, trailing zeros dropped.
    pub fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        self.json.push('"');
        push_script_float(&mut self.json, value);
        self.json.push('"');
    }

    /// A raw JSON number (the movement fields are sent unquoted).
    pub fn number(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.json, "{value}");
        } else {
            self.json.push_str("null");
        }
    }

    /// The finished JSON object.
    fn finish(mut self) -> String {
        self.json.push('}');
        self.json
    }
}

/// A batch as the game sends it: a JSON array of at most 20 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub events: usize,
    pub json: Vec<u8>,
}

/// Collects events into batches.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    json: Vec<u8>,
    events: usize,
}

impl BatchBuilder {
    pub fn push(&mut self, event: GameEvent) {
        self.json.push(if self.events == 0 { b'[' } else { b',' });
        self.json.extend_from_slice(event.finish().as_bytes());
        self.events += 1;
    }

    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The batch so far; the builder starts over.
    pub fn take(&mut self) -> Batch {
        let mut json = std::mem::take(&mut self.json);
        json.push(b']');
        Batch {
            events: std::mem::take(&mut self.events),
            json,
        }
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `format!("{v:.3}")` with trailing zeros and a trailing point removed,
/// by integer arithmetic (exact decimal formatting is the slow path of
/// `core::fmt`). Values are game coordinates and damage, far below 2^53
/// thousandths.
fn push_script_float(out: &mut String, v: f64) {
    let thousandths = (v * 1000.0).round();
    if !thousandths.is_finite() || thousandths.abs() >= 9.0e15 {
        let _ = write!(out, "{v}");
        return;
    }
    let t = thousandths as i64;
    if t == 0 {
        out.push('0');
        return;
    }
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    // `itoa`, not `write!`: formatting machinery was a tenth of the load
    // generator's CPU (perf), every event carries four or more floats.
    out.push_str(itoa::Buffer::new().format(a / 1000));
    let mut frac = a % 1000;
    if frac != 0 {
        let mut digits = 3;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        let mut buf = itoa::Buffer::new();
        let text = buf.format(frac);
        for _ in text.len()..digits {
            out.push('0');
        }
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn float(v: f64) -> String {
        let mut s = String::new();
        push_script_float(&mut s, v);
        s
    }

    #[test]
    fn floats_print_as_the_script_does() {
        assert_eq!(float(0.0), "0");
        assert_eq!(float(-0.0001), "0");
        assert_eq!(float(12.5), "12.5");
        assert_eq!(float(-1200.0), "-1200");
        assert_eq!(float(0.05), "0.05");
        assert_eq!(float(1234.56789), "1234.568");
        assert_eq!(float(-0.5), "-0.5");
        assert_eq!(float(3.007), "3.007");
        assert_eq!(float(-3.02), "-3.02");
    }

    proptest! {
        /// Agrees with the exact formatter everywhere but on ties, where
        /// the two round the binary value differently.
        #[test]
        fn float_matches_exact_formatting(v in -100_000.0f64..100_000.0) {
            let exact = format!("{v:.3}");
            let exact = exact.trim_end_matches('0').trim_end_matches('.');
            let exact = if exact.is_empty() || exact == "-" || exact == "-0" { "0" } else { exact };
            let tie = ((v * 1000.0).fract().abs() - 0.5).abs() < 1e-6;
            prop_assume!(!tie);
            prop_assert_eq!(float(v), exact);
        }

        #[test]
        fn text_round_trips_through_json(s in any::<String>(), n in -1.0e6f64..1.0e6) {
            let mut e = GameEvent::new("chat");
            e.text("message", &s);
            e.number("distance", n);
            e.int("round_number", 3);
            let mut b = BatchBuilder::default();
            b.push(e);
            let batch = b.take();
            let v: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&batch.json).unwrap();
            prop_assert_eq!(v.len(), 1);
            prop_assert_eq!(v[0]["type"].as_str(), Some("chat"));
            prop_assert_eq!(v[0]["message"].as_str(), Some(s.as_str()));
            // serde_json's default float parser may be off by one ulp.
            let back = v[0]["distance"].as_f64().unwrap();
            prop_assert!((back - n).abs() <= n.abs() * 1e-15, "{} came back as {}", n, back);
            prop_assert_eq!(v[0]["round_number"].as_str(), Some("3"));
        }
    }
}
