//! index.html: the report page (figures inlined), rendered from a handlebars template.

use base64::Engine;

use super::*;

const TEMPLATE: &str = include_str!("../../../templates/report/index.html.hbs");

#[derive(Serialize)]
struct HtmlFigure {
    caption: String,
    stem: String,
    src: Option<String>,
    links: Vec<(String, String)>,
}

#[derive(Serialize)]
struct HtmlSection {
    name: String,
    figures: Vec<HtmlFigure>,
}

#[derive(Serialize)]
struct HtmlData {
    title: String,
    simulated: bool,
    partly_simulated: bool,
    models: String,
    datasets: String,
    slo: String,
    winner: String,
    winner_per_gpu: String,
    winner_note: String,
    head: Vec<HeadRow>,
    blocks: Vec<VariantBlock>,
    sections: Vec<HtmlSection>,
    runs: Vec<String>,
    missing: Vec<String>,
    skipped: Vec<(String, String)>,
    version: &'static str,
}

pub(super) fn html(
    a: &Analysis,
    w: &Winner,
    figures: &[FigureFile],
    skipped: &[Skipped],
) -> anyhow::Result<String> {
    let (all_sim, any_sim) = provenance(a);
    let mut models: Vec<&str> = a.variants.iter().map(|v| v.model.as_str()).collect();
    models.dedup();
    let mut datasets: Vec<&str> = a.variants.iter().map(|v| v.dataset.as_str()).collect();
    datasets.dedup();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sections: Vec<HtmlSection> = Vec::new();
    for f in figures {
        let src = if let Some(svg) = &f.svg {
            Some(format!("data:image/svg+xml;base64,{}", b64.encode(svg)))
        } else {
            f.png
                .as_ref()
                .map(|p| format!("data:image/png;base64,{}", b64.encode(p)))
        };
        let fig = HtmlFigure {
            caption: f.caption.clone(),
            stem: f.stem.clone(),
            src,
            links: f.files.clone(),
        };
        match sections.iter_mut().find(|s| s.name == f.section) {
            Some(s) => s.figures.push(fig),
            None => sections.push(HtmlSection {
                name: f.section.clone(),
                figures: vec![fig],
            }),
        }
    }
    let data = HtmlData {
        title: title_of(a),
        simulated: all_sim,
        partly_simulated: any_sim && !all_sim,
        models: models.join(", "),
        datasets: datasets.join(", "),
        slo: slo_line(&a.scoring.slo, a.scoring.target_pct),
        winner: if w.by_goodput.is_empty() {
            "none reaches the target".into()
        } else if w.distinguishable {
            w.by_goodput.join(", ")
        } else {
            format!("{} (not distinguishable)", w.by_goodput.join(", "))
        },
        winner_per_gpu: if w.distinguishable_per_gpu {
            w.by_goodput_per_gpu.join(", ")
        } else {
            format!("{} (not distinguishable)", w.by_goodput_per_gpu.join(", "))
        },
        winner_note: w.note.clone(),
        head: head_rows(a, w),
        blocks: rate_blocks(a),
        sections,
        runs: run_lines(a),
        missing: missing_lines(a),
        skipped: skipped
            .iter()
            .map(|s| (s.path.display().to_string(), s.reason.clone()))
            .collect(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut hb = handlebars::Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_template_string("index", TEMPLATE)?;
    Ok(hb.render("index", &data)?)
}
