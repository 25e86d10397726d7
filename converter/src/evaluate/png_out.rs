//! PNG output: sample grids through the `png` crate, and line plots (ε SQNR per
//! timestep, any x/y series) drawn with `plotters` into an RGB buffer, then written
//! the same way. Plot text uses the bundled DejaVu Sans (`assets/`), so no system
//! font library is involved.

use std::fs::File;
use std::io::BufWriter;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::{Circle, EmptyElement, PathElement};
use plotters::prelude::*;

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

/// The font every plot's text is drawn with (DejaVu Sans, bundled: no system font,
/// fontconfig or freetype is needed, natively or cross-built).
static FONT_TTF: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The family name the bundled font is registered under: plotters' default.
const FONT: &str = "sans-serif";

/// Default plot size in pixels, readable at README width.
pub const PLOT_SIZE: (u32, u32) = (900, 500);

/// Series colours, in order (Tableau 10).
pub const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// Registers the bundled font with plotters, once per process.
fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_TTF).is_ok());
    if !ok {
        bail!("the bundled plot font (assets/DejaVuSans.ttf) cannot be parsed");
    }
    Ok(())
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// A solid line.
    Line,
    /// A solid line with a dot at each point.
    LineAndDots,
    /// A dashed line (e.g. a reference level).
    Dashed,
    /// Dots only (e.g. marked points).
    Dots,
}

/// One labelled series of a line plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text (empty: not in the legend).
    pub label: String,
    /// `(x, y)` points; need not be sorted. NaN points are skipped, infinite `y`
    /// values are drawn at the edge of the plot.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub draw: Draw,
    /// RGB colour; `None`: the [`PALETTE`] entry of the series' index.
    pub color: Option<[u8; 3]>,
}

impl Series {
    /// A solid line in the palette colour of its index.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { label: label.into(), points, draw: Draw::Line, color: None }
    }

    /// The same series drawn as `draw`.
    pub fn drawn(self, draw: Draw) -> Series {
        Series { draw, ..self }
    }

    /// The same series in colour `rgb`.
    pub fn colored(self, rgb: [u8; 3]) -> Series {
        Series { color: Some(rgb), ..self }
    }
}

/// A line plot: labelled series against one x and one y axis, with a title, axis
/// titles, grid lines and a legend.
#[derive(Clone, Debug)]
pub struct LinePlot<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// X axis title (with its unit).
    pub x_label: &'a str,
    /// Y axis title (with its unit).
    pub y_label: &'a str,
    /// The series, drawn in order (later ones on top).
    pub series: &'a [Series],
    /// Logarithmic x axis (only points with `x > 0` are drawn).
    pub log_x: bool,
    /// X range (points outside it are left out); `None`: from the points.
    pub x_range: Option<(f64, f64)>,
    /// Y range; `None`: the finite points' range, padded and rounded to ticks.
    pub y_range: Option<(f64, f64)>,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

impl<'a> LinePlot<'a> {
    /// A plot of `series` at [`PLOT_SIZE`], linear axes, ranges from the points.
    pub fn new(title: &'a str, x_label: &'a str, y_label: &'a str, series: &'a [Series]) -> Self {
        LinePlot {
            title,
            x_label,
            y_label,
            series,
            log_x: false,
            x_range: None,
            y_range: None,
            size: PLOT_SIZE,
        }
    }
}

/// A tick step of 1, 2 or 5 × 10^k giving about `n` intervals over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / n;
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&s| s >= raw).unwrap_or(10.0 * p)
}

/// `(lo, hi)` widened to multiples of a nice step (at least one step wide).
fn nice_range(lo: f64, hi: f64, n: f64) -> (f64, f64) {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let s = nice_step(hi - lo, n);
    ((lo / s).floor() * s, (hi / s).ceil() * s)
}

/// A tick label: integers without decimals, others with at most 3, trailing zeros cut.
fn tick_label(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Min and max of `vals` (`None` if empty).
fn min_max(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    vals.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

/// The axes' ranges: given ones, or from the points.
fn plot_ranges(plot: &LinePlot) -> ((f64, f64), (f64, f64)) {
    let pts = || plot.series.iter().flat_map(|s| s.points.iter().copied());
    let usable = |&(x, _): &(f64, f64)| x.is_finite() && (!plot.log_x || x > 0.0);
    let x = plot.x_range.unwrap_or_else(|| {
        let (lo, hi) = min_max(pts().filter(usable).map(|p| p.0)).unwrap_or((1.0, 10.0));
        match (plot.log_x, hi > lo) {
            (true, true) => (lo, hi),
            (true, false) => (lo / 2.0, lo * 2.0),
            (false, true) => (lo, hi),
            (false, false) => (lo - 1.0, lo + 1.0),
        }
    });
    let y = plot.y_range.unwrap_or_else(|| {
        let ys = pts().filter(usable).map(|p| p.1).filter(|y| y.is_finite());
        let (lo, hi) = min_max(ys).unwrap_or((0.0, 1.0));
        let pad = 0.05 * (hi - lo);
        nice_range(lo - pad, hi + pad, 8.0)
    });
    (x, y)
}

/// Renders `plot` into a `w × h × 3` RGB buffer.
///
/// # Errors
/// The bundled font cannot be loaded; a plot smaller than 200×150; empty or
/// non-finite ranges (a log x range must start above 0); plotters drawing errors.
pub fn render_line_plot(plot: &LinePlot) -> Result<Vec<u8>> {
    register_font()?;
    let (w, h) = plot.size;
    if w < 200 || h < 150 {
        bail!("a {w}×{h} plot is too small to be readable (at least 200×150)");
    }
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    let ((x0, x1), (y0, y1)) = plot_ranges(plot);
    let ok = |lo: f64, hi: f64| lo.is_finite() && hi.is_finite() && hi > lo;
    if !ok(x0, x1) || !ok(y0, y1) || (plot.log_x && x0 <= 0.0) {
        bail!("plot ranges x {x0}..{x1}, y {y0}..{y1} are empty or not finite (log x: from > 0)");
    }
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        if plot.log_x {
            draw_chart(&root, plot, (x0..x1).log_scale(), (x0, x1), y0..y1)?;
        } else {
            draw_chart(&root, plot, x0..x1, (x0, x1), y0..y1)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

/// Renders `plot` and writes it as an RGB PNG.
///
/// # Errors
/// As [`render_line_plot`] and [`write_png`].
pub fn line_plot(path: &Path, plot: &LinePlot) -> Result<()> {
    let rgb = render_line_plot(plot)?;
    write_png(path, plot.size.0 as usize, plot.size.1 as usize, 3, &rgb)
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Draws the chart (axes, grid, series, legend) on `root` with x coordinates `x`.
fn draw_chart<X>(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    plot: &LinePlot,
    x: X,
    x_span: (f64, f64),
    y: Range<f64>,
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let (ylo, yhi) = (y.start, y.end);
    let (x0, x1) = x_span;
    let mut chart = ChartBuilder::on(root)
        .caption(plot.title, (FONT, 26))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(58)
        .y_label_area_size(78)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let fmt = |v: &f64| tick_label(*v);
    chart
        .configure_mesh()
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 16))
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(11)
        .y_labels(9)
        .bold_line_style(RGBColor(200, 200, 200))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(1))
        .draw()
        .map_err(plot_err)?;

    for (i, s) in plot.series.iter().enumerate() {
        let [r, g, b] = s.color.unwrap_or(PALETTE[i % PALETTE.len()]);
        let color = RGBColor(r, g, b);
        let mut pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(px, py)| px.is_finite() && !py.is_nan() && (!plot.log_x || *px > 0.0))
            .filter(|(px, _)| plot.x_range.is_none_or(|(a, b)| *px >= a && *px <= b))
            .map(|&(px, py)| (px, py.clamp(ylo, yhi)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line = color.stroke_width(2);
        let dot = color.filled();
        let anno = match s.draw {
            Draw::Line => chart.draw_series(LineSeries::new(pts, line)),
            Draw::LineAndDots => chart.draw_series(LineSeries::new(pts, line).point_size(2)),
            Draw::Dashed => chart.draw_series(DashedLineSeries::new(pts, 10, 6, line)),
            Draw::Dots => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 5, dot))),
        }
        .map_err(plot_err)?;
        if !s.label.is_empty() {
            let anno = anno.label(s.label.as_str());
            match s.draw {
                Draw::Dots => anno.legend(move |(x, y)| Circle::new((x + 11, y), 5, dot)),
                Draw::Dashed => anno.legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (8, 0)], line)
                        + PathElement::new(vec![(14, 0), (22, 0)], line)
                }),
                Draw::Line | Draw::LineAndDots => {
                    anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], line))
                }
            };
        }
    }
    if plot.series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(legend_corner(plot, (x0, x1), (ylo, yhi)))
            .label_font((FONT, 16))
            .margin(12)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The corner of the plot area whose quarter holds the fewest points (ties: lower
/// right, upper right, upper left, lower left), for the legend.
fn legend_corner(
    plot: &LinePlot,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> SeriesLabelPosition {
    let fx = |x: f64| {
        if plot.log_x {
            (x.ln() - x0.ln()) / (x1.ln() - x0.ln())
        } else {
            (x - x0) / (x1 - x0)
        }
    };
    let mut n = [0usize; 4];
    for &(x, y) in plot.series.iter().flat_map(|s| s.points.iter()) {
        if !x.is_finite() || y.is_nan() || (plot.log_x && x <= 0.0) {
            continue;
        }
        let (u, v) = (fx(x), (y.clamp(y0, y1) - y0) / (y1 - y0));
        // Corners: lower right, upper right, upper left, lower left.
        for (k, (cu, cv)) in
            [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)].into_iter().enumerate()
        {
            if (u - cu).abs() < 0.45 && (v - cv).abs() < 0.45 {
                n[k] += 1;
            }
        }
    }
    match (0..4).min_by_key(|&k| n[k]) {
        Some(1) => SeriesLabelPosition::UpperRight,
        Some(2) => SeriesLabelPosition::UpperLeft,
        Some(3) => SeriesLabelPosition::LowerLeft,
        _ => SeriesLabelPosition::LowerRight,
    }
}

/// Line plot of ε SQNR (dB) per timestep `(t, dB)` with axes, grid, a legend, the
/// median as a dashed line and the worst timestep marked. Points need not be sorted;
/// infinite values (no error) are drawn at the top. The x axis runs from 0 to the
/// largest timestep rounded up to a tick (T for a full trajectory).
///
/// # Errors
/// As [`line_plot`].
pub fn sqnr_plot(path: &Path, pts: &[(usize, f64)], title: &str, xlabel: &str) -> Result<()> {
    let main: Vec<(f64, f64)> = pts.iter().map(|&(t, db)| (t as f64, db)).collect();
    let mut series = vec![Series::line("ε SQNR per timestep", main).drawn(Draw::LineAndDots)];
    let finite: Vec<f64> = pts.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
    if let Some((min, _)) = min_max(finite.iter().copied()) {
        let mut sorted = finite.clone();
        sorted.sort_by(f64::total_cmp);
        let med = sorted[sorted.len() / 2];
        let tmax = pts.iter().map(|p| p.0).max().unwrap_or(0) as f64;
        let tmin = pts.iter().map(|p| p.0).min().unwrap_or(0) as f64;
        series.push(
            Series::line(format!("median {med:.1} dB"), vec![(tmin, med), (tmax, med)])
                .drawn(Draw::Dashed)
                .colored(PALETTE[7]),
        );
        let worst: Vec<(f64, f64)> =
            pts.iter().filter(|p| p.1 == min).map(|&(t, db)| (t as f64, db)).collect();
        let label = format!("worst {min:.1} dB (t = {})", worst[0].0);
        series.push(Series::line(label, worst).drawn(Draw::Dots).colored(PALETTE[3]));
    }
    sqnr_plot_series(path, &series, title, xlabel)
}

/// Several ε SQNR series (dB) against timestep (e.g. median, per trajectory, worst)
/// in one plot, x from 0 to the largest timestep rounded up to a tick.
///
/// # Errors
/// As [`line_plot`].
pub fn sqnr_plot_series(path: &Path, series: &[Series], title: &str, xlabel: &str) -> Result<()> {
    let tmax = min_max(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
        .map_or(1.0, |(_, hi)| hi.max(1.0));
    let step = nice_step(tmax, 10.0);
    let mut plot = LinePlot::new(title, xlabel, "ε SQNR (dB)", series);
    plot.x_range = Some((0.0, (tmax / step).ceil() * step));
    line_plot(path, &plot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ddpm-png-{tag}-{}", std::process::id()))
    }

    /// Decodes an RGB PNG: `(width, height, rgb)`.
    fn read_rgb(p: &Path) -> (u32, u32, Vec<u8>) {
        let mut r = png::Decoder::new(File::open(p).unwrap()).read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Pixels of `rgb` (width `w`) inside `x0..x1 × y0..y1` satisfying `f`.
    fn count(
        rgb: &[u8],
        w: u32,
        (x0, x1): (u32, u32),
        (y0, y1): (u32, u32),
        f: impl Fn(&[u8]) -> bool,
    ) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&o| f(&rgb[o..o + 3]))
            .count()
    }

    fn dark(p: &[u8]) -> bool {
        p.iter().all(|&c| c < 90)
    }

    #[test]
    fn grid_round_trip() {
        let dir = tmp_dir("grid");
        let p = dir.join("g.png");
        let imgs: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8 * 20; 28 * 28]).collect();
        write_grid(&p, &imgs, 28, 28, 1, 8, 2).unwrap();
        let dec = png::Decoder::new(File::open(&p).unwrap());
        let r = dec.read_info().unwrap();
        let info = r.info();
        assert_eq!((info.width, info.height), (2 + 8 * 58, 2 + 2 * 58));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn sqnr_plot_has_axes_labels_and_series() {
        let dir = tmp_dir("sqnr");
        let p = dir.join("sqnr.png");
        let pts: Vec<(usize, f64)> =
            (0..100).map(|i| (i * 10, 30.0 + 15.0 * (i as f64 / 99.0).sqrt())).collect();
        sqnr_plot(&p, &pts, "eps SQNR int8 vs float (dB)", "timestep t").unwrap();
        let (w, h, rgb) = read_rgb(&p);
        assert_eq!((w, h), PLOT_SIZE);
        // Tick labels and the y axis title left of the plot area, tick labels and the
        // x axis title below it, the title above: all dark text on white.
        assert!(count(&rgb, w, (0, 90), (0, h), dark) > 400, "no y axis labels");
        assert!(count(&rgb, w, (0, w), (h - 70, h), dark) > 400, "no x axis labels");
        assert!(count(&rgb, w, (0, w), (0, 45), dark) > 300, "no title");
        let [r, g, b] = PALETTE[0];
        let blue = count(&rgb, w, (0, w), (0, h), |p| p == [r, g, b]);
        assert!(blue > 500, "series colour found at {blue} pixels only");
        let [r, g, b] = PALETTE[3];
        assert!(count(&rgb, w, (0, w), (0, h), |p| p == [r, g, b]) > 30, "worst marker missing");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn sqnr_plot_takes_infinite_and_single_points() {
        let dir = tmp_dir("sqnr-inf");
        let p = dir.join("a.png");
        sqnr_plot(&p, &[(0, f64::INFINITY), (500, 40.0), (999, f64::NAN)], "t", "x").unwrap();
        sqnr_plot(&p, &[(3, 20.0)], "t", "x").unwrap();
        sqnr_plot(&p, &[], "t", "x").unwrap();
        assert_eq!(read_rgb(&p).0, PLOT_SIZE.0);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn log_x_line_plot_with_several_series() {
        let dir = tmp_dir("logx");
        let p = dir.join("fid.png");
        let nfe: [f64; 6] = [5.0, 10.0, 20.0, 50.0, 100.0, 1000.0];
        let series = [
            Series::line("int8", nfe.iter().map(|&n| (n, 80.0 / n.sqrt())).collect()),
            Series::line("float", nfe.iter().map(|&n| (n, 70.0 / n.sqrt())).collect())
                .drawn(Draw::LineAndDots),
        ];
        let mut plot =
            LinePlot::new("FID against NFE", "NFE (network evaluations)", "FID", &series);
        plot.log_x = true;
        plot.size = (640, 400);
        line_plot(&p, &plot).unwrap();
        let (w, h, rgb) = read_rgb(&p);
        assert_eq!((w, h), (640, 400));
        for c in &PALETTE[..2] {
            assert!(count(&rgb, w, (0, w), (0, h), |p| p == c) > 200, "series {c:?} missing");
        }
        assert!(count(&rgb, w, (0, 90), (0, h), dark) > 300);
        plot.x_range = Some((0.0, 10.0));
        assert!(render_line_plot(&plot).is_err(), "a log axis from 0");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn nice_ticks() {
        assert_eq!(nice_step(990.0, 10.0), 100.0);
        assert_eq!(nice_step(17.0, 8.0), 5.0);
        assert_eq!(nice_range(29.3, 47.1, 8.0), (25.0, 50.0));
        assert_eq!(tick_label(40.0), "40");
        assert_eq!(tick_label(0.25), "0.25");
    }
}
