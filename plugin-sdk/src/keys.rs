//! Interned state key names, looked up by where the pack's string lies
//! before they are hashed.
//!
//! A pack passes the same few literals over and over; comparing a pointer
//! and length (then the bytes, since a freed string's address can come
//! back with other text) is much cheaper in a guest than hashing the name,
//! and `memcmp` there is a byte loop behind a call.

use std::cell::Cell;

use rustc_hash::FxHashMap;

/// Names remembered by address.
const RECENT: usize = 8;

/// Key names by dense index.
#[derive(Default)]
pub(crate) struct KeyTable {
    names: Vec<Box<str>>,
    index: FxHashMap<Box<str>, u32>,
    /// Names looked up before, by the address of the string they were
    /// looked up with (0: none) and their index, replaced round robin.
    at: [Cell<usize>; RECENT],
    key: [Cell<u32>; RECENT],
    next: Cell<usize>,
}

impl KeyTable {
    /// The index of `name`, if interned.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        let at = name.as_ptr() as usize;
        // A scan of plain addresses is a few instructions per entry; only a
        // match is checked further.
        for i in 0..RECENT {
            if self.at[i].get() == at {
                let k = self.key[i].get();
                if self
                    .names
                    .get(k as usize)
                    .is_some_and(|n| same_text(n.as_bytes(), name.as_bytes()))
                {
                    return Some(k);
                }
            }
        }
        let k = self.index.get(name).copied()?;
        let n = self.next.get();
        self.at[n % RECENT].set(at);
        self.key[n % RECENT].set(k);
        self.next.set(n.wrapping_add(1));
        Some(k)
    }

    /// The index of `name`, interned if new.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(k) = self.get(name) {
            return k;
        }
        let k = self.names.len() as u32;
        self.names.push(Box::from(name));
        self.index.insert(Box::from(name), k);
        k
    }

    /// The name at `index`.
    pub(crate) fn name(&self, index: u32) -> &str {
        &self.names[index as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn clear(&mut self) {
        self.names.clear();
        self.index.clear();
        self.at = Default::default();
        self.next.set(0);
    }
}

/// `a == b` for short strings without a call to `memcmp`: up to 16 bytes
/// as two overlapping loads per side.
#[inline]
pub(crate) fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u64_at = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
    let u32_at = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        8..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_is_byte_equality() {
        let words = [
            "",
            "a",
            "kills",
            "killz",
            "round-kills",
            "round-kilts",
            "0123456789abcdef",
            "0123456789abcdeF",
            "0123456789abcdef0",
            "1123456789abcdef0",
            "ab",
            "ba",
            "abc",
            "axc",
            "abcdefg",
            "abcdefh",
            "bbcdefg",
        ];
        for a in words {
            for b in words {
                assert_eq!(same_text(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn a_key_is_known_by_its_text_not_where_it_lies() {
        let mut t = KeyTable::default();
        let kills = t.intern("kills");
        let mills = t.intern("mills");
        let mut s = String::from("kills");
        assert_eq!(t.get(&s), Some(kills));
        assert_eq!(t.get(&s), Some(kills), "remembered by address");
        // Same address, same length, other text.
        s.replace_range(0..1, "m");
        assert_eq!(t.get(&s), Some(mills));
        // Same address, other length.
        assert_eq!(t.get(&s[..4]), None);
        s.replace_range(0..1, "x");
        assert_eq!(t.get(&s), None);
        assert_eq!(t.name(mills), "mills");
        t.clear();
        assert_eq!(t.get("kills"), None);
        assert_eq!(t.intern("other"), 0);
    }
}
