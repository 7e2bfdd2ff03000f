//! SVG → PDF (svg2pdf) and PNG (resvg), from the same parsed tree, with the bundled font only.

use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context};

use super::figures::FONT;

/// Output format of a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    Pdf,
    Svg,
    Png,
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
    let tree = if needs_tree { Some(parse(svg)?) } else { None };
    let mut out = Vec::new();
    for f in formats {
        let bytes = match (f, &tree) {
            (Format::Svg, _) => svg.as_bytes().to_vec(),
            (Format::Pdf, Some(t)) => to_pdf(t)?,
            (Format::Png, Some(t)) => to_png(t)?,
            _ => unreachable!("tree parsed whenever a raster or PDF format is asked"),
        };
        out.push((*f, bytes));
    }
    Ok(out)
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
    pixmap
        .encode_png()
        .map_err(|e| anyhow!("encoding PNG: {e}"))
}
