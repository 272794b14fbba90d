//! Byte diff of a region against its snapshot.

use crate::types::ByteRange;

/// The changed byte ranges between `old` and `new` (same length), ascending,
/// adjacent changed bytes merged into one range.
pub fn changed_ranges(old: &[u8], new: &[u8]) -> Vec<ByteRange> {
    debug_assert_eq!(old.len(), new.len());
    let mut ranges: Vec<ByteRange> = Vec::new();
    let mut i = 0;
    let n = old.len();
    while i < n {
        // Skip equal 8-byte words quickly.
        if i + 8 <= n && old[i..i + 8] == new[i..i + 8] {
            i += 8;
            continue;
        }
        if old[i] != new[i] {
            let start = i;
            while i < n && old[i] != new[i] {
                i += 1;
            }
            match ranges.last_mut() {
                Some(last) if last.offset + last.len == start => last.len += i - start,
                _ => ranges.push(ByteRange { offset: start, len: i - start }),
            }
        } else {
            i += 1;
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_merges_ranges() {
        let old = [0u8; 20];
        let mut new = old;
        new[1] = 1;
        new[2] = 2;
        new[9] = 9;
        new[19] = 7;
        assert_eq!(
            changed_ranges(&old, &new),
            vec![
                ByteRange { offset: 1, len: 2 },
                ByteRange { offset: 9, len: 1 },
                ByteRange { offset: 19, len: 1 }
            ]
        );
        assert!(changed_ranges(&old, &old).is_empty());
    }

    #[test]
    fn range_across_word_boundary() {
        let old = [0u8; 16];
        let mut new = old;
        for b in &mut new[6..11] {
            *b = 0xff;
        }
        assert_eq!(changed_ranges(&old, &new), vec![ByteRange { offset: 6, len: 5 }]);
    }
}
