//! TIMESTEP_EMBED: `y = table[t]`, the converter's quantized embedding of each
//! network timestep (i8 `[timesteps][dim]`).
//! Portable, every target.

/// Copies row `t` of `table` into `y` (`dim = y.len()`); returns `false` if `t` is
/// out of range.
pub fn timestep_embed(table: &[i8], t: usize, y: &mut [i8]) -> bool {
    let dim = y.len();
    match table.get(t * dim..(t + 1) * dim) {
        Some(row) => {
            y.iter_mut().zip(row).for_each(|(d, &v)| *d = v);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_row() {
        let table: Vec<i8> = (0..12).map(|v| v as i8).collect();
        let mut y = [0i8; 4];
        assert!(timestep_embed(&table, 2, &mut y));
        assert_eq!(y, [8, 9, 10, 11]);
        assert!(!timestep_embed(&table, 3, &mut y));
    }
}
