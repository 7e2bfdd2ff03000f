//! SVG → PDF (svg2pdf) and PNG (resvg), from the same parsed tree, with the bundled font only.

use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context};

use super::figures::FONT;

/// Output format of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Pdf,
    Svg,
    Png,
}

impl From<crate::manifest::FigureFormat> for Format {
    fn from(f: crate::manifest::FigureFormat) -> Self {
        match f {
            crate::manifest::FigureFormat::Pdf => Format::Pdf,
            crate::manifest::FigureFormat::Svg => Format::Svg,
            crate::manifest::FigureFormat::Png => Format::Png,
        }
    }
}

impl Format {
    pub fn ext(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

/// A font database with the bundled DejaVu Sans standing in for every generic family, so the
/// result is the same on a server with no fonts at all.
fn fontdb() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        db.set_serif_family("DejaVu Sans");
        db.set_monospace_family("DejaVu Sans");
        Arc::new(db)
    })
    .clone()
}

fn parse(svg: &str) -> anyhow::Result<usvg::Tree> {
    let opt = usvg::Options {
        font_family: "DejaVu Sans".to_string(),
        fontdb: fontdb(),
        ..Default::default()
    };
    usvg::Tree::from_str(svg, &opt).context("parsing the generated SVG")
}

/// Render `svg` into each requested format. SVG is returned as is.
pub fn render(svg: &str, formats: &[Format]) -> anyhow::Result<Vec<(Format, Vec<u8>)>> {
    let needs_tree = formats.iter().any(|f| *f != Format::Svg);
    let t0 = std::time::Instant::now();
    let tree = if needs_tree { Some(parse(svg)?) } else { None };
    timing::add(timing::PARSE, t0);
    let mut out = Vec::new();
    for f in formats {
        let t = std::time::Instant::now();
        let bytes = match (f, &tree) {
            (Format::Svg, _) => svg.as_bytes().to_vec(),
            (Format::Pdf, Some(t)) => to_pdf(t)?,
            (Format::Png, Some(t)) => to_png(t)?,
            _ => unreachable!("tree parsed whenever a raster or PDF format is asked"),
        };
        timing::add(
            match f {
                Format::Svg => timing::SVG_COPY,
                Format::Pdf => timing::PDF,
                Format::Png => timing::PNG,
            },
            t,
        );
        out.push((*f, bytes));
    }
    Ok(out)
}

/// Where report time goes, summed over threads; printed when `VBENCH_REPORT_TIMING` is set.
pub mod timing {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    pub const IMPORT: usize = 0;
    pub const ANALYSE: usize = 1;
    pub const DRAW: usize = 2;
    pub const PARSE: usize = 3;
    pub const PDF: usize = 4;
    pub const PNG: usize = 5;
    pub const SVG_COPY: usize = 6;
    pub const WRITE: usize = 7;
    pub const SUMMARY: usize = 8;
    pub const PNG_ENCODE: usize = 9;
    const NAMES: [&str; 10] = [
        "import",
        "analyse",
        "draw svg",
        "parse svg",
        "pdf",
        "png (all)",
        "svg",
        "write",
        "summaries",
        "png encode",
    ];
    static NANOS: [AtomicU64; 10] = [const { AtomicU64::new(0) }; 10];

    pub fn add(stage: usize, since: Instant) {
        NANOS[stage].fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// The stage times as one line (and reset them), when `VBENCH_REPORT_TIMING` asks for it.
    pub fn report() -> Option<String> {
        std::env::var_os("VBENCH_REPORT_TIMING")?;
        let parts: Vec<String> = NAMES
            .iter()
            .zip(&NANOS)
            .map(|(n, a)| format!("{n} {:.3}s", a.swap(0, Ordering::Relaxed) as f64 / 1e9))
            .collect();
        Some(format!(
            "timing (cpu, summed over threads): {}",
            parts.join(", ")
        ))
    }
}

fn to_pdf(tree: &usvg::Tree) -> anyhow::Result<Vec<u8>> {
    svg2pdf::to_pdf(
        tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions::default(),
    )
    .map_err(|e| anyhow!("converting to PDF: {e:?}"))
}

fn to_png(tree: &usvg::Tree) -> anyhow::Result<Vec<u8>> {
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("figure has zero size"))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    let t = std::time::Instant::now();
    let out = encode_png_fast(&pixmap);
    timing::add(timing::PNG_ENCODE, t);
    out
}

/// PNG with fast compression: figures are mostly flat colour, so the size stays small while
/// encoding is several times faster than the default level. Pixels are un-premultiplied
/// (the figure is opaque: white background), so the RGBA data can be written as is.
fn encode_png_fast(pixmap: &resvg::tiny_skia::Pixmap) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, pixmap.width(), pixmap.height());
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        enc.set_filter(png::FilterType::Sub);
        let mut w = enc
            .write_header()
            .map_err(|e| anyhow!("encoding PNG: {e}"))?;
        w.write_image_data(pixmap.data())
            .map_err(|e| anyhow!("encoding PNG: {e}"))?;
    }
    Ok(out)
}
