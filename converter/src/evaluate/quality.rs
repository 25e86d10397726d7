//! `converter compare`: how far the int8 artifact is from the float model.
//!
//! - ε SQNR per timestep along float trajectories: at every state x_t the float
//!   sampler visits, the same state goes to the int8 runtime
//!   (`Sampler::set_state` + `predict_eps`, ε read the way the sampler reads it) and
//!   to tract; SQNR = 10·log10(Σε_f² / Σ(ε_f − ε_q)²), summed over trajectories per
//!   timestep.
//! - Same-seed samples on both engines: PSNR of the final u8 images (one MSE over
//!   all pixels of all samples).
//! - A small MNIST classifier (tract): the recognisable fraction (max softmax ≥ 0.9)
//!   and the Fréchet distance of its 128-d penultimate features against 1000
//!   held-out real digits; real digits against themselves (even vs odd records,
//!   500 each: the held-out file is sorted by class) give the floor.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ddpm_runtime::{Mode, Model, NoHooks, Sampler, SamplerConfig};
use serde_json::json;
use tract_onnx::prelude::*;

use crate::artifact::tensors::{eps_to_f64, is_artifact, to_state};
use crate::evaluate::png_out;
use crate::evaluate::sample::{self, FloatSampler, FloatSchedule, Precision};

/// SQNR in dB from the signal energy Σε_f² and the error energy Σ(ε_f − ε_q)²
/// (∞ when the error is zero). Energies, not slices, so several trajectories can be
/// summed per timestep first (`compare::sqnr_db` is the per-slice form).
pub fn sqnr_from_energies(sig: f64, err: f64) -> f64 {
    if err == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (sig / err).log10()
}

/// The MNIST classifier: x f32[1,1,28,28] in [−1, 1] → logits [1,10], features [1,128].
pub struct Classifier {
    plan: Arc<TypedRunnableModel>,
    logits: usize,
    features: usize,
}

/// Classifier outputs for one image.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Largest softmax probability.
    pub confidence: f64,
    /// Arg-max class.
    pub class: usize,
    /// Penultimate features.
    pub features: Vec<f64>,
}

impl Classifier {
    /// Loads the ONNX classifier.
    ///
    /// # Errors
    /// Missing file, wrong inputs or outputs.
    pub fn load(path: &Path) -> Result<Classifier> {
        let mut m = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("cannot load the classifier {}", path.display()))?;
        m.set_input_fact(0, f32::fact([1, 1, 28, 28]).into())?;
        let m = m.into_optimized()?;
        let outs = m.output_outlets()?.to_vec();
        let mut logits = None;
        let mut features = None;
        for (i, o) in outs.iter().enumerate() {
            let f = m.outlet_fact(*o)?;
            match f.shape.as_concrete().map(|s| s.iter().product::<usize>()) {
                Some(10) => logits = Some(i),
                Some(128) => features = Some(i),
                _ => {}
            }
        }
        let (Some(logits), Some(features)) = (logits, features) else {
            bail!(
                "{} must output logits [1,10] and features [1,128] for x f32[1,1,28,28]",
                path.display()
            );
        };
        Ok(Classifier { plan: m.into_runnable()?, logits, features })
    }

    /// Scores a 28×28 u8 image (0 = black … 255 = white).
    ///
    /// # Errors
    /// tract failures or a wrong image size.
    pub fn score(&self, px: &[u8]) -> Result<Scored> {
        if px.len() != 784 {
            bail!("the classifier takes 28×28 gray images, got {} pixels", px.len());
        }
        let x: Vec<f32> = px.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
        let out = self.plan.run(tvec!(Tensor::from_shape(&[1, 1, 28, 28], &x)?.into_tvalue()))?;
        let view = |i: usize| -> Result<Vec<f64>> {
            Ok(out[i].to_plain_array_view::<f32>()?.iter().map(|&v| v as f64).collect())
        };
        let logits = view(self.logits)?;
        let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
        let class = logits.iter().position(|&l| l == mx).unwrap_or(0);
        Ok(Scored { confidence: 1.0 / sum, class, features: view(self.features)? })
    }
}

/// Held-out real digits: `(label, 784 pixels)` records.
///
/// # Errors
/// Missing file or a size that is not a multiple of 785.
pub fn read_heldout(path: &Path) -> Result<Vec<(u8, Vec<u8>)>> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if b.is_empty() || b.len().checked_rem(785) != Some(0) {
        bail!("{}: {} bytes is not a whole number of 785-byte records", path.display(), b.len());
    }
    Ok(b.chunks_exact(785).map(|r| (r[0], r[1..].to_vec())).collect())
}

/// Mean and unbiased covariance (n − 1) of the rows.
pub fn mean_cov(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len();
    let d = rows.first().map_or(0, Vec::len);
    let mut mu = vec![0f64; d];
    for r in rows {
        for (m, v) in mu.iter_mut().zip(r) {
            *m += v / n as f64;
        }
    }
    let mut cov = vec![0f64; d * d];
    for r in rows {
        for i in 0..d {
            let a = r[i] - mu[i];
            for j in i..d {
                cov[i * d + j] += a * (r[j] - mu[j]);
            }
        }
    }
    let den = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / den;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mu, cov)
}

/// Eigen-decomposition of a symmetric `n × n` matrix (row-major) by cyclic Jacobi
/// rotations: `(eigenvalues, eigenvectors as columns, row-major)`.
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0f64;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// Square root of a symmetric positive semi-definite matrix (negative eigenvalues,
/// rounding noise, are taken as 0).
pub fn sqrtm_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (l, v) = sym_eigen(a, n);
    let mut out = vec![0f64; n * n];
    for (k, &lk) in l.iter().enumerate() {
        let r = lk.max(0.0).sqrt();
        if r == 0.0 {
            continue;
        }
        for i in 0..n {
            let vi = v[i * n + k] * r;
            for j in 0..n {
                out[i * n + j] += vi * v[j * n + k];
            }
        }
    }
    out
}

/// Fréchet distance between Gaussians `(μ1, Σ1)` and `(μ2, Σ2)`:
/// `|μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)`.
pub fn frechet(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64]) -> f64 {
    let n = mu1.len();
    let dmu: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let r1 = sqrtm_psd(s1, n);
    let m = matmul(&matmul(&r1, s2, n), &r1, n);
    let mut sym = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            sym[i * n + j] = 0.5 * (m[i * n + j] + m[j * n + i]);
        }
    }
    let (l, _) = sym_eigen(&sym, n);
    let tr_sqrt: f64 = l.iter().map(|x| x.max(0.0).sqrt()).sum();
    let tr: f64 = (0..n).map(|i| s1[i * n + i] + s2[i * n + i]).sum();
    dmu + tr - 2.0 * tr_sqrt
}

/// Fréchet distance between two feature sets.
pub fn frechet_of(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let (m1, s1) = mean_cov(a);
    let (m2, s2) = mean_cov(b);
    frechet(&m1, &s1, &m2, &s2)
}

/// Fraction of `scores` with confidence ≥ 0.9.
pub fn recognisable(scores: &[Scored]) -> f64 {
    scores.iter().filter(|s| s.confidence >= 0.9).count() as f64 / scores.len().max(1) as f64
}

/// Median and minimum of the finite-or-infinite values.
pub fn median_min(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let k = s.len();
    let med = if k % 2 == 1 { s[k / 2] } else { (s[k / 2 - 1] + s[k / 2]) / 2.0 };
    (med, s[0])
}

/// `converter compare` options.
#[derive(Clone, Debug)]
pub struct CompareOpts {
    /// Float ONNX.
    pub model: PathBuf,
    /// int8 artifact.
    pub artifact: PathBuf,
    /// Print JSON instead of text.
    pub json: bool,
    /// SQNR plot.
    pub plot: Option<PathBuf>,
    /// Samples per engine.
    pub n: usize,
    /// Sampler of the sample comparison (seed of sample 0).
    pub cfg: SamplerConfig,
    /// DDIM steps of the SQNR trajectories.
    pub sqnr_steps: u32,
    /// Number of SQNR trajectories.
    pub sqnr_trajectories: usize,
    /// Classifier ONNX.
    pub classifier: PathBuf,
    /// Held-out digits.
    pub heldout: PathBuf,
    /// Progress bars.
    pub progress: bool,
}

impl Default for CompareOpts {
    /// −n 256, DDIM 20 steps, η 0, seed 0; SQNR along 2 float DDIM trajectories of
    /// 100 steps; classifier and held-out digits from `models/`.
    fn default() -> Self {
        let mut cfg = sample::default_cfg();
        sample::finish_cfg(&mut cfg, 20, 0.0);
        CompareOpts {
            model: PathBuf::new(),
            artifact: PathBuf::new(),
            json: false,
            plot: None,
            n: 256,
            cfg,
            sqnr_steps: 100,
            sqnr_trajectories: 2,
            classifier: sample::default_model_path("mnist_classifier.onnx"),
            heldout: sample::default_model_path("heldout.bin"),
            progress: true,
        }
    }
}

/// `(model, artifact)` from two paths given in either order: the artifact is
/// recognised by its magic bytes.
pub fn model_and_artifact(a: PathBuf, b: PathBuf) -> (PathBuf, PathBuf) {
    let looks_artifact = |p: &Path| {
        let mut m = [0u8; 8];
        std::fs::File::open(p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut m))
            .is_ok_and(|_| is_artifact(&m))
    };
    if looks_artifact(&a) && !looks_artifact(&b) {
        (b, a)
    } else {
        (a, b)
    }
}

/// Everything `compare` measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// `(t, SQNR dB)` per visited timestep, t descending.
    pub eps_sqnr: Vec<(usize, f64)>,
    /// PSNR (dB) of int8 against float samples.
    pub psnr_db: f64,
    /// Fréchet distances.
    pub fid_int8: f64,
    /// Fréchet distance, float samples.
    pub fid_float: f64,
    /// Fréchet distance, real even vs odd records.
    pub fid_real_split: f64,
    /// Recognisable fractions.
    pub recognisable_int8: f64,
    /// Recognisable fraction, float.
    pub recognisable_float: f64,
    /// Recognisable fraction, real.
    pub recognisable_real: f64,
    /// Mean pixel value (0..255) of the int8 samples (a systematic ε offset shows here).
    pub mean_pixel_int8: f64,
    /// Mean pixel value of the float samples.
    pub mean_pixel_float: f64,
    /// Samples per engine.
    pub n: usize,
}

impl Report {
    /// The JSON object printed by `--json`.
    pub fn to_json(&self, o: &CompareOpts) -> serde_json::Value {
        let (med, min) = median_min(&self.eps_sqnr.iter().map(|x| x.1).collect::<Vec<_>>());
        let mode = match o.cfg.mode {
            Mode::Ddpm => "ddpm".to_string(),
            Mode::Ddim { steps, eta_q16 } => {
                format!("ddim steps={steps} eta={:.3}", eta_q16 as f64 / 65536.0)
            }
        };
        json!({
            "eps_sqnr_db_median": med,
            "eps_sqnr_db_min": min,
            "eps_sqnr_db": self.eps_sqnr.iter().map(|(t, d)| json!({"t": t, "db": d})).collect::<Vec<_>>(),
            "psnr_db": self.psnr_db,
            "fid_int8": self.fid_int8,
            "fid_float": self.fid_float,
            "fid_real_split": self.fid_real_split,
            "recognisable_int8": self.recognisable_int8,
            "recognisable_float": self.recognisable_float,
            "recognisable_real": self.recognisable_real,
            "mean_pixel_int8": self.mean_pixel_int8,
            "mean_pixel_float": self.mean_pixel_float,
            "samples": self.n,
            "sampler": mode,
            "seed": o.cfg.seed,
            "sqnr_trajectories": o.sqnr_trajectories,
            "sqnr_steps": o.sqnr_steps,
        })
    }
}

/// Runs every measurement of `compare`.
///
/// # Errors
/// Load, runtime or tract failures.
pub fn compare(o: &CompareOpts) -> Result<Report> {
    if o.n < 2 || o.sqnr_trajectories == 0 || o.sqnr_steps == 0 {
        bail!("-n must be at least 2, --sqnr-steps and --sqnr-trajectories at least 1");
    }
    let bytes = std::fs::read(&o.artifact)
        .with_context(|| format!("cannot read {}", o.artifact.display()))?;
    let m = Model::load(&bytes).map_err(|e| anyhow!("artifact rejected: {e}"))?;
    let sched = FloatSchedule::from_model(&m);
    let (fm, chw) = sample::load_float(&o.model, Precision::F32)?;
    let [h, w, c] = m.image_shape();
    if [c as usize, h as usize, w as usize] != chw {
        bail!("the artifact's image {h}×{w}×{c} differs from the model's {chw:?} (C,H,W)");
    }
    let clf = Classifier::load(&o.classifier)?;
    let real = read_heldout(&o.heldout)?;

    // ε SQNR along float trajectories.
    let f = m.state_frac_bits();
    let mut arena = vec![0u8; Sampler::arena_bytes_with_cache(&m)];
    let mut q = Sampler::new(&m, &mut arena, o.cfg).map_err(|e| anyhow!("sampler: {e}"))?;
    let sq_cfg = SamplerConfig { mode: Mode::Ddim { steps: o.sqnr_steps, eta_q16: 0 }, ..o.cfg };
    let mut acc: Vec<(usize, f64, f64)> = Vec::new();
    let b =
        sample::bar((o.sqnr_steps as usize * o.sqnr_trajectories) as u64, "eps SQNR", o.progress);
    for k in 0..o.sqnr_trajectories {
        let cfg = SamplerConfig { seed: sq_cfg.seed.wrapping_add(k as u64), ..sq_cfg };
        let mut fs = FloatSampler::new(&fm, &sched, chw, cfg)?;
        let mut j = 0;
        while let Some(t) = fs.next_timestep() {
            let st: Vec<i32> = fs.state().iter().map(|&x| to_state(x, f)).collect();
            q.set_state(&st).map_err(|e| anyhow!("{e}"))?;
            let eq = q.predict_eps(t as u32, &mut NoHooks).map_err(|e| anyhow!("{e}"))?;
            let eq = eps_to_f64(&m, eq)?;
            let (_, ef) = fs.step()?.ok_or_else(|| anyhow!("float sampler ended early"))?;
            let sig: f64 = ef.iter().map(|v| v * v).sum();
            let err: f64 = ef.iter().zip(&eq).map(|(a, b)| (a - b) * (a - b)).sum();
            if acc.len() <= j {
                acc.push((t, 0.0, 0.0));
            }
            acc[j].1 += sig;
            acc[j].2 += err;
            j += 1;
            b.inc(1);
        }
    }
    b.finish_and_clear();
    let eps_sqnr: Vec<(usize, f64)> =
        acc.iter().map(|&(t, s, e)| (t, sqnr_from_energies(s, e))).collect();

    // Same-seed samples.
    let per = sample::total_steps(sched.timesteps, &o.cfg) as u64;
    let b = sample::bar(2 * per * o.n as u64, "samples ", o.progress);
    let (mut si, mut sf) = (Vec::new(), Vec::new());
    let mut sq_err = 0f64;
    let (mut sum_i, mut sum_f) = (0f64, 0f64);
    let mut npx = 0usize;
    for i in 0..o.n {
        let cfg = SamplerConfig { seed: o.cfg.seed.wrapping_add(i as u64), ..o.cfg };
        let pi = sample::sample_int8(&m, cfg, &b)?;
        let pf = sample::sample_float(&fm, &sched, chw, cfg, &b)?;
        sq_err += pi.iter().zip(&pf).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
        npx += pi.len();
        sum_i += pi.iter().map(|&v| v as f64).sum::<f64>();
        sum_f += pf.iter().map(|&v| v as f64).sum::<f64>();
        si.push(clf.score(&pi)?);
        sf.push(clf.score(&pf)?);
    }
    b.finish_and_clear();
    let mse = sq_err / npx.max(1) as f64;
    let psnr_db = if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() };

    let sr: Vec<Scored> = real.iter().map(|(_, px)| clf.score(px)).collect::<Result<_>>()?;
    let feats = |s: &[Scored]| s.iter().map(|x| x.features.clone()).collect::<Vec<_>>();
    let (fr, fi, ff) = (feats(&sr), feats(&si), feats(&sf));
    let even: Vec<Vec<f64>> = fr.iter().step_by(2).cloned().collect();
    let odd: Vec<Vec<f64>> = fr.iter().skip(1).step_by(2).cloned().collect();
    Ok(Report {
        eps_sqnr,
        psnr_db,
        fid_int8: frechet_of(&fi, &fr),
        fid_float: frechet_of(&ff, &fr),
        fid_real_split: frechet_of(&even, &odd),
        recognisable_int8: recognisable(&si),
        recognisable_float: recognisable(&sf),
        recognisable_real: recognisable(&sr),
        mean_pixel_int8: sum_i / npx.max(1) as f64,
        mean_pixel_float: sum_f / npx.max(1) as f64,
        n: o.n,
    })
}

/// `converter compare`.
///
/// # Errors
/// As [`compare`]; plot write failures.
pub fn run_compare(o: &CompareOpts) -> Result<()> {
    let r = compare(o)?;
    if let Some(p) = &o.plot {
        png_out::sqnr_plot(p, &r.eps_sqnr, "eps SQNR int8 vs float (dB)", "timestep t")?;
        eprintln!("wrote {}", p.display());
    }
    let j = r.to_json(o);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    let (med, min) = median_min(&r.eps_sqnr.iter().map(|x| x.1).collect::<Vec<_>>());
    let worst = r.eps_sqnr.iter().find(|x| x.1 == min).map_or(0, |x| x.0);
    println!(
        "eps SQNR: median {med:.2} dB, worst {min:.2} dB (t = {worst}) over {} timesteps, {} trajectories",
        r.eps_sqnr.len(),
        o.sqnr_trajectories
    );
    println!("sample PSNR int8 vs float (same seeds): {:.2} dB over {} samples", r.psnr_db, r.n);
    println!("{:<22} {:>12} {:>10}", "", "recognisable", "FID");
    println!("{:<22} {:>12.3} {:>10.3}", "int8", r.recognisable_int8, r.fid_int8);
    println!("{:<22} {:>12.3} {:>10.3}", "float (tract)", r.recognisable_float, r.fid_float);
    println!("{:<22} {:>12.3} {:>10.3}", "real 500 vs 500", r.recognisable_real, r.fid_real_split);
    println!("mean pixel: int8 {:.2}, float {:.2}", r.mean_pixel_int8, r.mean_pixel_float);
    println!("(FID against the {} held-out digits; sampler {})", 1000, j["sampler"]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs() {
        let n = 6;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + i as f64 + j as f64) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let r = sqrtm_psd(&a, n);
        let rr = matmul(&r, &r, n);
        for (x, y) in rr.iter().zip(&a) {
            assert!((x - y).abs() < 1e-10, "{x} {y}");
        }
    }

    #[test]
    fn frechet_of_gaussians() {
        // 1-d: N(0, 1) vs N(1, 4): 1 + 1 + 4 − 2·2 = 2.
        assert!((frechet(&[0.0], &[1.0], &[1.0], &[4.0]) - 2.0).abs() < 1e-12);
        let s = vec![2.0, 0.5, 0.5, 1.0];
        assert!(frechet(&[0.0, 0.0], &s, &[0.0, 0.0], &s).abs() < 1e-9);
    }
}
