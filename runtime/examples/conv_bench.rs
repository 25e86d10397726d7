//! Host timing of the reference CONV2D on a UNet-sized layer:
//! `cargo run --release -p ddpm-runtime --example conv_bench`.

use ddpm_runtime::ops::conv2d::{conv2d, Conv2dParams};
use std::time::Instant;

fn main() {
    let (h, w, ic, oc) = (28usize, 28usize, 32usize, 32usize);
    let x: Vec<i8> = (0..h * w * ic).map(|i| (i * 7 % 251) as i8).collect();
    let wt: Vec<i8> = (0..oc * 9 * ic).map(|i| (i * 13 % 241) as i8).collect();
    let i32b = |v: i32| (0..oc).flat_map(move |_| v.to_le_bytes()).collect::<Vec<u8>>();
    let (bias, mult, shift) = (i32b(100), i32b(1 << 30), i32b(-10));
    let p = Conv2dParams {
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        pt: 1,
        pl: 1,
        in_zp: -3,
        out_zp: 0,
        act_min: -128,
        act_max: 127,
    };
    let mut y = vec![0i8; h * w * oc];
    let mut scratch = vec![0u8; 4 * oc];
    let reps = 20;
    let t0 = Instant::now();
    for _ in 0..reps {
        conv2d(&x, [h, w, ic], &mut y, [h, w, oc], &p, &wt, &bias, &mult, &shift, &mut scratch);
    }
    let macs = (h * w * oc * 9 * ic * reps) as f64;
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{:.2} ns/MAC, {:.1} MMAC/s (checksum {})",
        dt * 1e9 / macs,
        macs / dt / 1e6,
        y.iter().map(|&v| v as i64).sum::<i64>()
    );
}
