//! PNG output: sample grids and RGB images (plots), through the `png` crate.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Writes `w × h` 8-bit pixels with `channels` 1 (gray) or 3 (RGB).
///
/// # Errors
/// I/O or encoder failures, a wrong buffer size.
pub fn write_png(path: &Path, w: usize, h: usize, channels: usize, data: &[u8]) -> Result<()> {
    if data.len() != w * h * channels {
        bail!("image buffer of {} bytes for {w}×{h}×{channels}", data.len());
    }
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => bail!("{channels} channels: only 1 or 3 can be written as PNG"),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(f), w as u32, h as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(data)?;
    wr.finish()?;
    Ok(())
}

/// Lays NHWC images (`h × w × c` u8 each) out in a grid, `per_row` per row, with a
/// 2-pixel black border, each pixel repeated `scale` times, and writes it.
///
/// # Errors
/// As [`write_png`]; images of the wrong size.
pub fn write_grid(
    path: &Path,
    images: &[Vec<u8>],
    h: usize,
    w: usize,
    c: usize,
    per_row: usize,
    scale: usize,
) -> Result<()> {
    let (gw, gh) = grid_size(images.len(), h, w, per_row, scale);
    let mut buf = vec![0u8; gw * gh * c];
    for (i, img) in images.iter().enumerate() {
        if img.len() != h * w * c {
            bail!("image {i} has {} bytes, expected {}", img.len(), h * w * c);
        }
        let (r, col) = (i / per_row, i % per_row);
        let (oy, ox) = (2 + r * (h * scale + 2), 2 + col * (w * scale + 2));
        for y in 0..h * scale {
            for x in 0..w * scale {
                let src = ((y / scale) * w + x / scale) * c;
                let dst = ((oy + y) * gw + ox + x) * c;
                buf[dst..dst + c].copy_from_slice(&img[src..src + c]);
            }
        }
    }
    write_png(path, gw, gh, c, &buf)
}

/// Width and height of a grid of `n` images.
pub fn grid_size(n: usize, h: usize, w: usize, per_row: usize, scale: usize) -> (usize, usize) {
    let cols = n.clamp(1, per_row.max(1));
    let rows = n.div_ceil(per_row.max(1)).max(1);
    (2 + cols * (w * scale + 2), 2 + rows * (h * scale + 2))
}

/// 5×7 glyphs (bit 4 = leftmost column) for the characters plots use.
fn glyph(ch: char) -> Option<[u8; 7]> {
    Some(match ch {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'a' => [0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'd' => [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F],
        'e' => [0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'f' => [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'm' => [0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11],
        'n' => [0, 0, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'r' => [0, 0, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'v' => [0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'w' => [0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A],
        'x' => [0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11],
        _ => return None,
    })
}

/// An RGB canvas.
pub struct Canvas {
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    /// RGB bytes, row-major.
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// White canvas.
    pub fn new(w: usize, h: usize) -> Canvas {
        Canvas { w, h, rgb: vec![255; w * h * 3] }
    }

    /// Sets a pixel (ignored outside).
    pub fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let o = (y as usize * self.w + x as usize) * 3;
            self.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    /// A line (Bresenham).
    pub fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.put(x0, y0, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    /// Text with the built-in 5×7 font, top-left at `(x, y)`, glyphs scaled by `s`.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let Some(g) = glyph(ch) else { continue };
            let ox = x + i as i64 * 6 * scale;
            for (r, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.put(ox + col * scale + dx, y + r as i64 * scale + dy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Pixel width of `s` at `scale`.
    pub fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 6 * scale
    }

    /// Writes the canvas as an RGB PNG.
    ///
    /// # Errors
    /// As [`write_png`].
    pub fn save(&self, path: &Path) -> Result<()> {
        write_png(path, self.w, self.h, 3, &self.rgb)
    }
}

/// Line plot of `(t, dB)` points with axes, ticks and labels (points need not be
/// sorted; infinite values are drawn at the top).
///
/// # Errors
/// As [`write_png`].
pub fn sqnr_plot(path: &Path, pts: &[(usize, f64)], title: &str, xlabel: &str) -> Result<()> {
    let (w, h) = (720usize, 420usize);
    let (l, r, t, b) = (64i64, 24i64, 40i64, 56i64);
    let mut cv = Canvas::new(w, h);
    let mut p: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (x as f64, y)).collect();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let finite: Vec<f64> = p.iter().map(|q| q.1).filter(|v| v.is_finite()).collect();
    let (mut ymin, mut ymax) =
        finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    if !ymin.is_finite() {
        (ymin, ymax) = (0.0, 10.0);
    }
    let ystep = if ymax - ymin > 60.0 { 10.0 } else { 5.0 };
    let (y0, mut y1) = ((ymin / ystep).floor() * ystep, (ymax / ystep).ceil() * ystep);
    if y1 <= y0 {
        y1 = y0 + ystep;
    }
    let xmax = p.last().map_or(1.0, |q| q.0).max(1.0);
    let xstep = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        .into_iter()
        .find(|s| xmax / s <= 10.0)
        .unwrap_or(5000.0);
    let (pw, ph) = (w as i64 - l - r, h as i64 - t - b);
    let px = |x: f64| l + (x / xmax * pw as f64).round() as i64;
    let py = |y: f64| t + ph - ((y.min(y1) - y0) / (y1 - y0) * ph as f64).round() as i64;
    let (grey, black, blue) = ([220, 220, 220], [0, 0, 0], [30, 90, 200]);
    let mut y = y0;
    while y <= y1 + 1e-9 {
        let yy = py(y);
        cv.line((l, yy), (l + pw, yy), grey);
        cv.line((l - 4, yy), (l, yy), black);
        let s = format!("{y:.0}");
        cv.text(l - 8 - Canvas::text_width(&s, 1), yy - 3, &s, 1, black);
        y += ystep;
    }
    let mut x = 0.0;
    while x <= xmax + 1e-9 {
        let xx = px(x);
        cv.line((xx, t), (xx, t + ph), grey);
        cv.line((xx, t + ph), (xx, t + ph + 4), black);
        let s = format!("{x:.0}");
        cv.text(xx - Canvas::text_width(&s, 1) / 2, t + ph + 8, &s, 1, black);
        x += xstep;
    }
    cv.line((l, t), (l, t + ph), black);
    cv.line((l, t + ph), (l + pw, t + ph), black);
    let mut prev = None;
    for &(x, yv) in &p {
        let yv = if yv.is_finite() { yv } else { y1 };
        let q = (px(x), py(yv));
        if let Some(pp) = prev {
            cv.line(pp, q, blue);
        }
        for d in -1..=1 {
            cv.line((q.0 - 1, q.1 + d), (q.0 + 1, q.1 + d), blue);
        }
        prev = Some(q);
    }
    cv.text(l + (pw - Canvas::text_width(title, 2)) / 2, 10, title, 2, black);
    cv.text(l + (pw - Canvas::text_width(xlabel, 1)) / 2, h as i64 - 20, xlabel, 1, black);
    cv.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_round_trip() {
        let dir = std::env::temp_dir().join(format!("ddpm-png-{}", std::process::id()));
        let p = dir.join("g.png");
        let imgs: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8 * 20; 28 * 28]).collect();
        write_grid(&p, &imgs, 28, 28, 1, 8, 2).unwrap();
        let dec = png::Decoder::new(File::open(&p).unwrap());
        let r = dec.read_info().unwrap();
        let info = r.info();
        assert_eq!((info.width, info.height), (2 + 8 * 58, 2 + 2 * 58));
        std::fs::remove_dir_all(dir).ok();
    }
}
