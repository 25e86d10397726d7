//! Schedule-table sanity: values against DESIGN.md's ranges, identities between the
//! tables, and the sampler's integer DDIM coefficients against f64.

mod common;

use ddpm_runtime::format::writer::ScheduleDesc;
use ddpm_runtime::*;

fn q(s: &ScheduleDesc, k: usize, i: usize) -> f64 {
    s.tables[k][i] as f64 / 2f64.powi(s.frac_bits[k] as i32)
}

#[test]
fn linear_schedule_values_and_identities() {
    let s = ScheduleDesc::linear(1000, 1e-4, 0.02);
    assert_eq!(s.frac_bits, [30; 8]);
    let last = 999;
    // DESIGN.md's table (t = 1 and t = T).
    assert!((q(&s, 0, 0) - 1.00005).abs() < 1e-6 && (q(&s, 0, last) - 1.01015).abs() < 1e-5);
    assert!((q(&s, 1, 0) - 0.0100).abs() < 1e-4 && (q(&s, 1, last) - 0.0200).abs() < 1e-4);
    assert!((q(&s, 2, 0) - 0.0100).abs() < 1e-6 && (q(&s, 2, last) - 0.14142).abs() < 1e-5);
    assert!((q(&s, 4, last) - 0.00635).abs() < 1e-4 && (q(&s, 5, 0) - 0.0100).abs() < 1e-6);
    // First step: β̃ = 0, posterior mean = x̂₀.
    assert_eq!(s.tables[3][0], 0);
    assert_eq!(s.tables[6][0], 1 << 30);
    assert_eq!(s.tables[7][0], 0);
    let lsb = 2f64.powi(-30);
    for i in 0..1000 {
        let (c1, c2, sb, st) = (q(&s, 0, i), q(&s, 1, i), q(&s, 2, i), q(&s, 3, i));
        let (sa, so, p0, pt) = (q(&s, 4, i), q(&s, 5, i), q(&s, 6, i), q(&s, 7, i));
        assert!((sa * sa + so * so - 1.0).abs() < 4.0 * lsb, "ᾱ + (1 − ᾱ) = 1 at {i}");
        assert!((1.0 / (c1 * c1) + sb * sb - 1.0).abs() < 8.0 * lsb, "α + β = 1 at {i}");
        assert!(st <= sb, "β̃ ≤ β at {i}");
        // c1·(x − c2·ε) equals the posterior mean with x̂₀ = (x − √(1−ᾱ)ε)/√ᾱ:
        // coefficient of x and of ε.
        assert!((c1 - (p0 / sa + pt)).abs() < 1e-6 * c1, "x coefficient at {i}");
        assert!((c1 * c2 - p0 * so / sa).abs() < 1e-6 + 1e-6 * c1 * c2, "ε coefficient at {i}");
        if i > 0 {
            assert!(s.tables[4][i] < s.tables[4][i - 1] && s.tables[5][i] > s.tables[5][i - 1]);
        }
    }
}

#[test]
fn cosine_and_quadratic_fit_i32() {
    let c = ScheduleDesc::cosine(1000);
    assert_eq!(c.kind, 1);
    // β reaches 0.999 at the end, so c1 = 1/√α ≈ 31.6 needs fewer fractional bits.
    assert!(c.frac_bits[0] < 30);
    for k in 0..8 {
        assert!(c.tables[k].iter().all(|&v| v >= 0), "table {k}");
    }
    let qd = ScheduleDesc::quadratic(1000, 1e-4, 0.02);
    assert_eq!(qd.kind, 2);
    assert!((q(&qd, 2, 999) - 0.02f64.sqrt()).abs() < 1e-7);
}

#[test]
fn ddim_coefficients_match_f64() {
    let bytes = common::tiny();
    let m = Model::load(&bytes).unwrap();
    let mut arena = vec![0u8; Sampler::arena_bytes(&m)];
    let cfg = SamplerConfig {
        seed: 0,
        mode: Mode::Ddim { steps: 4, eta_q16: 0 },
        sigma: Sigma::Beta,
        clip_x0: false,
    };
    let s = Sampler::new(&m, &mut arena, cfg).unwrap();
    let sched = ScheduleDesc::linear(common::T, 0.01, 0.2);
    let ab = |i: usize| q(&sched, 4, i).powi(2);
    for (t, prev) in [(19u32, Some(15u32)), (10, Some(5)), (5, None), (1, Some(0))] {
        for eta in [0u32, 1 << 15, 1 << 16] {
            let (a, d, sg) = s.ddim_coeffs(t, prev, eta);
            let e = eta as f64 / 65536.0;
            let abt = ab(t as usize);
            let abp = prev.map(|p| ab(p as usize)).unwrap_or(1.0);
            let s2 = e * e * (1.0 - abp) / (1.0 - abt) * (1.0 - abt / abp);
            let want = [abp.sqrt(), (1.0 - abp - s2).max(0.0).sqrt(), s2.sqrt()];
            for (got, want) in [a, d, sg].iter().zip(want) {
                // Q30 roots of floored Q60 values: a few LSB of Q30.
                assert!((*got as f64 / 2f64.powi(30) - want).abs() < 1e-8, "t={t} η={e}");
            }
        }
    }
}
