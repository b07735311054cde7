//! Figures and tables from run and experiment directories.
//!
//! Everything here reads what [`crate::results`] wrote (never the in-memory metrics), so a
//! figure can be redrawn from an archived run. Figures are sized for one column of a two-column
//! paper (3.5 in wide): PNG at 300 dpi (1050 px wide), SVG with the same drawing and a physical
//! size in inches; text is 7–8 pt at that size. PNGs say their 300 dpi (a `pHYs` chunk), so
//! LaTeX places them 3.5 in wide without `width=`. Text is the vendored DejaVu Sans, which SVGs
//! carry inside them (an `@font-face` with a `data:` URL, about 1 MB per file), so no system
//! font is needed to draw or view them. Colours are the Okabe–Ito palette (distinguishable with colour-blindness).
//! Figures are derived files: they go to a `figures/` directory and are replaced on redraw.

mod experiment;
mod html;
mod run;
pub mod stats;
mod table;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::{self, ResultsError};

pub use experiment::plot_experiment;
pub use html::write_report;
pub use run::plot_run;
pub use table::{compare, Analysis, TableFormat, TableKind, TableOptions, METRICS};

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_is_the_png_crc() {
        // The IEND chunk's CRC, as every PNG ends with it.
        assert_eq!(super::crc32(b"IEND"), 0xae42_6082);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{path}: cannot create the figures directory: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("drawing {path}: {msg}")]
    Draw { path: PathBuf, msg: String },
    #[error("the vendored font assets/fonts/DejaVuSans.ttf cannot be loaded")]
    Font,
    #[error("{0}: no complete runs")]
    NoRuns(PathBuf),
    #[error("unknown column `{column}`; the columns are {known}")]
    UnknownColumn { column: String, known: String },
}

pub(crate) static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family figures are drawn in, and the name SVGs give their embedded font.
pub(crate) const SVG_FAMILY: &str = "DejaVu Sans";
const FAMILY: &str = SVG_FAMILY;

fn register_font() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ReportError::Font)
    }
}

/// Okabe–Ito colours, in the order series get them.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
];
pub(crate) const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
pub(crate) const SHADE: RGBColor = RGBColor(0xF0, 0xE4, 0x42); // Okabe–Ito yellow

/// Lengths in a figure, given in typographic points and scaled to the backend's pixels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale(f64);

impl Scale {
    /// Pixels per point at 300 dpi.
    const DPI300: Scale = Scale(300.0 / 72.0);

    pub(crate) fn px(self, pt: f64) -> i32 {
        (pt * self.0).round().max(1.0) as i32
    }
    pub(crate) fn upx(self, pt: f64) -> u32 {
        self.px(pt).unsigned_abs()
    }
    /// A font whose em is `pt` points (plotters sizes fonts by line height, 1.24 em).
    pub(crate) fn font(self, pt: f64) -> TextStyle<'static> {
        (FAMILY, pt * 1.24 * self.0).into_font().color(&BLACK)
    }
    pub(crate) fn line(self, color: RGBColor, pt: f64) -> ShapeStyle {
        color.stroke_width(self.upx(pt))
    }
}

/// A figure that can be drawn on any plotters backend.
pub(crate) trait Figure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        s: Scale,
    ) -> Result<(), String>;
}

/// Turns a plotters error into text (their error types are generic over the backend).
pub(crate) fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `fig` as `<dir>/<name>.svg` and `<dir>/<name>.png`, `w_in` × `h_in` inches.
pub(crate) fn render<F: Figure>(
    fig: &F,
    dir: &Path,
    name: &str,
    w_in: f64,
    h_in: f64,
) -> Result<Vec<PathBuf>, ReportError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let size = |dpi: f64| ((w_in * dpi).round() as u32, (h_in * dpi).round() as u32);

    let svg_path = dir.join(format!("{name}.svg"));
    let draw_err = |path: &Path| {
        let path = path.to_path_buf();
        move |msg: String| ReportError::Draw { path, msg }
    };
    // The SVG is drawn on the same 300-dpi pixel grid as the PNG (plotters rounds SVG
    // coordinates to whole pixels, too coarse at 96 px/in) and then given its physical size:
    // the viewBox keeps the pixel grid, width and height say inches.
    let (w, h) = size(300.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de).map_err(draw_err(&svg_path))?;
        fig.draw(&root, Scale::DPI300)
            .map_err(draw_err(&svg_path))?;
        root.present().map_err(de).map_err(draw_err(&svg_path))?;
    }
    let svg = svg.replacen(
        &format!("<svg width=\"{w}\" height=\"{h}\""),
        &format!("<svg width=\"{w_in}in\" height=\"{h_in}in\""),
        1,
    );
    let svg = embed_font(&svg);
    results::write_atomic(dir, &format!("{name}.svg"), svg.as_bytes())?;

    // The bitmap backend picks the encoder from the extension, so the temporary name ends in .png.
    let png_path = dir.join(format!("{name}.png"));
    let tmp = dir.join(format!(".{name}.tmp-{}.png", std::process::id()));
    {
        let root = BitMapBackend::new(&tmp, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de).map_err(draw_err(&png_path))?;
        fig.draw(&root, Scale::DPI300)
            .map_err(draw_err(&png_path))?;
        root.present().map_err(de).map_err(draw_err(&png_path))?;
    }
    set_png_dpi(&tmp, 300.0).map_err(|e| ReportError::Draw {
        path: png_path.clone(),
        msg: e.to_string(),
    })?;
    std::fs::rename(&tmp, &png_path).map_err(|e| ReportError::Draw {
        path: png_path.clone(),
        msg: e.to_string(),
    })?;
    Ok(vec![svg_path, png_path])
}

/// Makes an SVG carry its font: an `@font-face` with the vendored DejaVu Sans as a `data:` URL
/// right after the opening tag, so the SVG looks the same on a machine without the font.
fn embed_font(svg: &str) -> String {
    use base64::Engine as _;
    let Some(end) = svg.find('>') else {
        return svg.to_string();
    };
    let font = base64::engine::general_purpose::STANDARD.encode(FONT);
    format!(
        "{}\n<style>@font-face{{font-family:'{SVG_FAMILY}';src:url(data:font/ttf;base64,{font}) format('truetype')}}</style>{}",
        &svg[..=end],
        &svg[end + 1..]
    )
}

/// CRC-32 (ISO 3309, as PNG chunks use it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Inserts a `pHYs` chunk (pixels per metre) after the PNG's header chunk, so that LaTeX and
/// image viewers place it at its physical size.
fn set_png_dpi(path: &Path, dpi: f64) -> std::io::Result<()> {
    let png = std::fs::read(path)?;
    // 8-byte signature, then IHDR: 4 length + 4 type + 13 data + 4 CRC.
    let at = 8 + 4 + 4 + 13 + 4;
    if png.len() < at || &png[12..16] != b"IHDR" {
        return Err(std::io::Error::other("not a PNG with an IHDR chunk first"));
    }
    let ppm = (dpi / 0.0254).round() as u32;
    let mut chunk = b"pHYs".to_vec();
    chunk.extend(ppm.to_be_bytes());
    chunk.extend(ppm.to_be_bytes());
    chunk.push(1); // unit: metre
    let mut out = png[..at].to_vec();
    out.extend(9u32.to_be_bytes());
    out.extend(&chunk);
    out.extend(crc32(&chunk).to_be_bytes());
    out.extend(&png[at..]);
    std::fs::write(path, out)
}

/// A number for an axis label or a table cell: 3 significant digits for small values,
/// no decimals from 100 up.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    let d = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    results::timeseries::fmt_decimal(x, d)
}
