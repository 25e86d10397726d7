//! Noise schedules and the fixed-point coefficient tables of the SCHEDULE section.

use anyhow::{bail, Result};

/// How β grows over the timesteps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// β linear from `beta_start` to `beta_end`.
    Linear,
    /// Nichol & Dhariwal's cosine ᾱ (s = 0.008, β clipped at 0.999).
    Cosine,
    /// √β linear from √`beta_start` to √`beta_end`.
    Quadratic,
}

impl Kind {
    /// FORMAT.md code: 0 linear, 1 cosine, 2 quadratic.
    pub fn code(self) -> u32 {
        match self {
            Kind::Linear => 0,
            Kind::Cosine => 1,
            Kind::Quadratic => 2,
        }
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Linear => "linear",
            Kind::Cosine => "cosine",
            Kind::Quadratic => "quadratic",
        }
    }
    /// Parses `linear|cosine|quadratic`.
    ///
    /// # Errors
    /// Any other name.
    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s {
            "linear" => Kind::Linear,
            "cosine" => Kind::Cosine,
            "quadratic" => Kind::Quadratic,
            _ => bail!("unknown schedule {s:?}; expected linear, cosine or quadratic"),
        })
    }
}

/// Schedule settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Kind of schedule.
    pub kind: Kind,
    /// Number of timesteps T.
    pub timesteps: usize,
    /// β at the first step (linear, quadratic).
    pub beta_start: f64,
    /// β at the last step (linear, quadratic).
    pub beta_end: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { kind: Kind::Linear, timesteps: 1000, beta_start: 1e-4, beta_end: 0.02 }
    }
}

/// The schedule's float coefficients, all f64.
#[derive(Clone, Debug)]
pub struct Coefficients {
    /// β_i.
    pub beta: Vec<f64>,
    /// ᾱ_i.
    pub alpha_bar: Vec<f64>,
    /// The 8 tables of FORMAT.md, in order.
    pub tables: [Vec<f64>; 8],
}

impl Schedule {
    /// Checks the settings.
    ///
    /// # Errors
    /// T outside 2..=65535 or β outside (0, 1), or start > end.
    pub fn validate(&self) -> Result<()> {
        if !(2..=65535).contains(&self.timesteps) {
            bail!("--timesteps {} must be in 2..=65535", self.timesteps);
        }
        if self.kind != Kind::Cosine
            && !(self.beta_start > 0.0 && self.beta_end < 1.0 && self.beta_start <= self.beta_end)
        {
            bail!(
                "betas must satisfy 0 < beta_start ({}) <= beta_end ({}) < 1",
                self.beta_start,
                self.beta_end
            );
        }
        Ok(())
    }

    /// β_i for i = 0..T−1.
    pub fn betas(&self) -> Vec<f64> {
        let t = self.timesteps;
        let lin = |a: f64, b: f64, i: usize| a + (b - a) * i as f64 / (t - 1) as f64;
        match self.kind {
            Kind::Linear => (0..t).map(|i| lin(self.beta_start, self.beta_end, i)).collect(),
            Kind::Quadratic => (0..t)
                .map(|i| lin(self.beta_start.sqrt(), self.beta_end.sqrt(), i).powi(2))
                .collect(),
            Kind::Cosine => {
                let s = 0.008;
                // cos from the `libm` crate: the same bits on every host.
                let f = |i: usize| {
                    libm::cos((i as f64 / t as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
                        .powi(2)
                };
                (0..t).map(|i| (1.0 - f(i + 1) / f(i)).clamp(0.0, 0.999)).collect()
            }
        }
    }

    /// All coefficients in f64.
    pub fn coefficients(&self) -> Coefficients {
        let beta = self.betas();
        let mut alpha_bar = Vec::with_capacity(beta.len());
        let mut ab = 1.0f64;
        for b in &beta {
            ab *= 1.0 - b;
            alpha_bar.push(ab);
        }
        let mut tables: [Vec<f64>; 8] = Default::default();
        for (i, &b) in beta.iter().enumerate() {
            let a = 1.0 - b;
            let abar = alpha_bar[i];
            let abar_prev = if i == 0 { 1.0 } else { alpha_bar[i - 1] };
            let beta_tilde = b * (1.0 - abar_prev) / (1.0 - abar);
            tables[0].push(1.0 / a.sqrt());
            tables[1].push(b / (1.0 - abar).sqrt());
            tables[2].push(b.sqrt());
            tables[3].push(beta_tilde.sqrt());
            tables[4].push(abar.sqrt());
            tables[5].push((1.0 - abar).sqrt());
            tables[6].push(b * abar_prev.sqrt() / (1.0 - abar));
            tables[7].push(a.sqrt() * (1.0 - abar_prev) / (1.0 - abar));
        }
        Coefficients { beta, alpha_bar, tables }
    }
}

/// Fractional bits for a table: 30, or the largest count for which every value fits i32.
pub fn frac_bits_for(values: &[f64]) -> u8 {
    let mx = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    let mut fb = 30u8;
    while fb > 0 && (mx * (1u64 << fb) as f64).round() > i32::MAX as f64 {
        fb -= 1;
    }
    fb
}

/// The 8 tables rounded once to their fixed-point formats: `(frac_bits, tables)`.
pub fn fixed_point_tables(c: &Coefficients) -> ([u8; 8], [Vec<i32>; 8]) {
    let mut fbs = [0u8; 8];
    let mut out: [Vec<i32>; 8] = Default::default();
    for k in 0..8 {
        let fb = frac_bits_for(&c.tables[k]);
        fbs[k] = fb;
        let scale = (1u64 << fb) as f64;
        out[k] = c.tables[k].iter().map(|v| (v * scale).round() as i32).collect();
    }
    (fbs, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: Schedule) {
        let c = s.coefficients();
        let (fbs, tabs) = fixed_point_tables(&c);
        for k in 0..8 {
            let lsb = 1.0 / (1u64 << fbs[k]) as f64;
            for (i, (&q, &f)) in tabs[k].iter().zip(&c.tables[k]).enumerate() {
                let err = (q as f64 * lsb - f).abs();
                assert!(err <= lsb, "{:?} table {k} entry {i}: {q} vs {f}", s.kind);
            }
        }
    }

    #[test]
    fn tables_within_one_lsb() {
        for kind in [Kind::Linear, Kind::Cosine, Kind::Quadratic] {
            check(Schedule { kind, ..Schedule::default() });
        }
    }

    #[test]
    fn linear_values_match_design() {
        let c = Schedule::default().coefficients();
        let t = &c.tables;
        assert!((t[0][0] - 1.00005).abs() < 1e-5);
        assert!((t[0][999] - 1.01015).abs() < 1e-5);
        assert!((t[2][999] - 0.1414).abs() < 1e-4);
        assert!((t[4][999] - 0.00635).abs() < 1e-4);
        assert_eq!(t[3][0], 0.0);
        let (fbs, _) = fixed_point_tables(&c);
        assert_eq!(fbs, [30; 8]);
    }

    #[test]
    fn cosine_needs_fewer_frac_bits() {
        let c = Schedule { kind: Kind::Cosine, ..Schedule::default() }.coefficients();
        let (fbs, _) = fixed_point_tables(&c);
        // β clipped at 0.999 makes 1/√α ≈ 31.6: needs 5 integer bits + sign, so 26 fractional bits.
        assert_eq!(fbs[0], 26);
        assert!((c.beta[999] - 0.999).abs() < 1e-12);
    }
}
