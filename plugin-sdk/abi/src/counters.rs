//! The packed form of `state.write-counters`: 24 little-endian bytes per
//! write (`at` u32, scope u8, operation u8, 2 zero bytes, `player` u32,
//! `key` u32, `value` s64).

/// Bytes per packed counter write.
pub const COUNTER_WRITE_SIZE: usize = 24;

/// What a write does to the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    /// Adds the value (operation byte 0).
    Add,
    /// Overwrites with the value (operation byte 1).
    Put,
}

/// One counter write, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterWriteRecord {
    pub at: u32,
    /// `scope` case index.
    pub scope: u8,
    pub op: CounterOp,
    pub player: u32,
    /// Key id (`state.key`).
    pub key: u32,
    pub value: i64,
}

/// Why a packed list of writes is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterWriteError {
    /// The length is not a multiple of [`COUNTER_WRITE_SIZE`].
    Length(usize),
    /// Write `index` names operation byte `op`.
    Op { index: usize, op: u8 },
}

impl std::fmt::Display for CounterWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterWriteError::Length(n) => write!(
                f,
                "write-counters got {n} bytes, not a multiple of {COUNTER_WRITE_SIZE}"
            ),
            CounterWriteError::Op { index, op } => {
                write!(f, "write-counters write {index} has operation {op}")
            }
        }
    }
}

impl std::error::Error for CounterWriteError {}

impl CounterWriteRecord {
    /// Appends the packed form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; COUNTER_WRITE_SIZE];
        b[0..4].copy_from_slice(&self.at.to_le_bytes());
        b[4] = self.scope;
        b[5] = match self.op {
            CounterOp::Add => 0,
            CounterOp::Put => 1,
        };
        b[8..12].copy_from_slice(&self.player.to_le_bytes());
        b[12..16].copy_from_slice(&self.key.to_le_bytes());
        b[16..24].copy_from_slice(&self.value.to_le_bytes());
        out.extend_from_slice(&b);
    }

    /// Decodes every write of a packed list, in order.
    pub fn decode_all(
        bytes: &[u8],
    ) -> Result<
        impl ExactSizeIterator<Item = Result<CounterWriteRecord, CounterWriteError>> + '_,
        CounterWriteError,
    > {
        if !bytes.len().is_multiple_of(COUNTER_WRITE_SIZE) {
            return Err(CounterWriteError::Length(bytes.len()));
        }
        Ok(bytes
            .chunks_exact(COUNTER_WRITE_SIZE)
            .enumerate()
            .map(|(index, b)| {
                let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
                Ok(CounterWriteRecord {
                    at: u32_at(0),
                    scope: b[4],
                    op: match b[5] {
                        0 => CounterOp::Add,
                        1 => CounterOp::Put,
                        op => return Err(CounterWriteError::Op { index, op }),
                    },
                    player: u32_at(8),
                    key: u32_at(12),
                    value: i64::from_le_bytes(b[16..24].try_into().unwrap()),
                })
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write() -> impl Strategy<Value = CounterWriteRecord> {
        (
            any::<u32>(),
            any::<u8>(),
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
        )
            .prop_map(|(at, scope, put, player, key, value)| CounterWriteRecord {
                at,
                scope,
                op: if put { CounterOp::Put } else { CounterOp::Add },
                player,
                key,
                value,
            })
    }

    proptest! {
        #[test]
        fn writes_survive_the_round_trip(writes in proptest::collection::vec(write(), 0..16)) {
            let mut packed = Vec::new();
            for w in &writes {
                w.encode(&mut packed);
            }
            let back: Vec<_> = CounterWriteRecord::decode_all(&packed)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(back, writes);
        }
    }

    #[test]
    fn malformed_lists_are_named() {
        assert_eq!(
            CounterWriteRecord::decode_all(&[0; 25]).err(),
            Some(CounterWriteError::Length(25))
        );
        let mut b = vec![0u8; 48];
        b[24 + 5] = 7;
        let r: Vec<_> = CounterWriteRecord::decode_all(&b).unwrap().collect();
        assert!(r[0].is_ok());
        assert_eq!(r[1], Err(CounterWriteError::Op { index: 1, op: 7 }));
    }
}
