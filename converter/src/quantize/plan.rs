//! Arena memory planning: greedy by size over op lifetimes (TFLM's GreedyMemoryPlanner).

/// A buffer to place: bytes and the op interval `[first, last]` it is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Size in bytes.
    pub size: usize,
    /// First op index at which it is alive.
    pub first: usize,
    /// Last op index at which it is alive.
    pub last: usize,
}

/// Alignment of every offset.
pub const ALIGN: usize = 16;

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// A placement: offsets per buffer, arena size and the lower bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Offset of each buffer, in input order.
    pub offsets: Vec<usize>,
    /// Arena bytes needed.
    pub arena_bytes: usize,
    /// Max over time of the sum of (aligned) sizes alive at once: no plan does better.
    pub lower_bound: usize,
}

/// Places buffers largest first, each at the lowest offset that does not collide with an
/// already placed buffer whose lifetime overlaps.
pub fn plan(bufs: &[Buffer]) -> Plan {
    let mut order: Vec<usize> = (0..bufs.len()).collect();
    order.sort_by(|&a, &b| bufs[b].size.cmp(&bufs[a].size).then(bufs[a].first.cmp(&bufs[b].first)));
    let mut offsets = vec![0usize; bufs.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0usize;
    for &i in &order {
        let b = bufs[i];
        let mut live: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| bufs[j].first <= b.last && b.first <= bufs[j].last)
            .map(|&j| (offsets[j], offsets[j] + align(bufs[j].size)))
            .collect();
        live.sort();
        let mut off = 0usize;
        for (s, e) in live {
            if off + align(b.size) <= s {
                break;
            }
            off = off.max(e);
        }
        offsets[i] = off;
        arena = arena.max(off + align(b.size));
        placed.push(i);
    }
    let horizon = bufs.iter().map(|b| b.last + 1).max().unwrap_or(0);
    let lower_bound = (0..horizon)
        .map(|t| bufs.iter().filter(|b| b.first <= t && t <= b.last).map(|b| align(b.size)).sum())
        .max()
        .unwrap_or(0);
    Plan { offsets, arena_bytes: arena, lower_bound }
}

/// Every buffer at its own offset, in order (no reuse): for diagnostics.
pub fn no_reuse(bufs: &[Buffer]) -> Plan {
    let mut offsets = Vec::with_capacity(bufs.len());
    let mut off = 0;
    for b in bufs {
        offsets.push(off);
        off += align(b.size);
    }
    let lower_bound = plan(bufs).lower_bound;
    Plan { offsets, arena_bytes: off, lower_bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(bufs: &[Buffer], p: &Plan) -> bool {
        for i in 0..bufs.len() {
            for j in 0..i {
                let t = bufs[i].first <= bufs[j].last && bufs[j].first <= bufs[i].last;
                let m = p.offsets[i] < p.offsets[j] + bufs[j].size
                    && p.offsets[j] < p.offsets[i] + bufs[i].size;
                if t && m {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn chain_reuses_memory() {
        // a -> b -> c -> d: only two alive at a time.
        let bufs: Vec<Buffer> =
            (0..4).map(|i| Buffer { size: 100, first: i, last: i + 1 }).collect();
        let p = plan(&bufs);
        assert!(!overlaps(&bufs, &p));
        assert_eq!(p.lower_bound, 224);
        assert_eq!(p.arena_bytes, 224);
    }

    #[test]
    fn skip_connection_stays_alive() {
        let bufs = vec![
            Buffer { size: 64, first: 0, last: 5 },
            Buffer { size: 200, first: 1, last: 2 },
            Buffer { size: 200, first: 2, last: 3 },
            Buffer { size: 32, first: 3, last: 5 },
            Buffer { size: 16, first: 4, last: 4 },
        ];
        let p = plan(&bufs);
        assert!(!overlaps(&bufs, &p));
        assert!(p.arena_bytes >= p.lower_bound);
        assert_eq!(p.lower_bound, 480);
        assert_eq!(p.arena_bytes, 480);
    }
}
