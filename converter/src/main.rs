use std::path::PathBuf;

use anyhow::Result;
use ddpm_converter::{float, interp, load, lower};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump-graph") => {
            let l = load::load(&PathBuf::from(&args[1]), None)?;
            print!("{}", load::dump(&l.model));
            Ok(())
        }
        Some("check") => {
            let l = load::load(&PathBuf::from(&args[1]), None)?;
            let chw = l.image_chw;
            let mut tab =
                |o: &[tract_onnx::prelude::OutletId]| float::time_table(&l.model, chw, o, 1000);
            let low = lower::lower(&l.model, 1000, &mut tab)?;
            let g = &low.graph;
            for op in &g.ops {
                let ins: Vec<String> =
                    op.inputs.iter().map(|&t| format!("{:?}", g.tensors[t].shape())).collect();
                println!(
                    "{:16} {:50} {} -> {:?}",
                    op.kind.name(),
                    op.source,
                    ins.join(","),
                    g.tensors[op.output].shape()
                );
            }
            let fm = float::FloatModel::new(&l.model, chw)?;
            let n: usize = chw.iter().product();
            let x: Vec<f32> =
                (0..n).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.5).collect();
            for t in [0i64, 10, 500, 999] {
                let e = fm.eps(&x, t)?;
                let xi = interp::nchw_to_nhwc(&x, chw[0], chw[1], chw[2]);
                let vals = interp::run(g, &xi, t as usize);
                let ei = interp::nhwc_to_nchw(&vals[g.output], chw[0], chw[1], chw[2]);
                let md = e.iter().zip(&ei).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                println!("t={t} max|tract - ir| = {md:e}");
            }
            Ok(())
        }
        _ => anyhow::bail!("usage: converter quantize|inspect|dump-graph ..."),
    }
}
