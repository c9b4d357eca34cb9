//! LEB128 unsigned varints for the compact sketch encodings.

pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn get(input: &mut &[u8]) -> Option<u64> {
    // One byte holds most deltas and counts of a sketch.
    if let Some((&b, rest)) = input.split_first() {
        if b < 0x80 {
            *input = rest;
            return Some(u64::from(b));
        }
    }
    get_long(input)
}

/// The next value of a strictly increasing sequence stored as deltas (the first from 0):
/// `None` when the delta does not decode, is 0 after the first value (a repeat), or runs past
/// `u64`.
pub fn get_increasing(input: &mut &[u8], prev: Option<u64>) -> Option<u64> {
    let delta = get(input)?;
    match prev {
        None => Some(delta),
        Some(_) if delta == 0 => None,
        Some(p) => p.checked_add(delta),
    }
}

fn get_long(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}
