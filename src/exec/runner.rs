//! The glue from the executor to the load generator and the report: the manifest's dataset and
//! load settings become a `LoadSpec` for each cell. The request set is prepared once per run and
//! replayed, unchanged, against every variant and rate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::OnceCell;

use crate::load::{
    self, dataset, schedule, Api, LoadSpec, NoProgress, PreparedRequest, Tokenizer, Topology,
};
use crate::manifest::{self, DatasetKind, LoadedManifest, Mode};
use crate::plan::RoleKind;
use crate::results::{DeploymentInfo, RunResult};

use super::apply::{CellRequest, CellRunner};

/// Runs each cell with vbench's own load generator.
#[derive(Default)]
pub struct LoadGenRunner {
    prepared: OnceCell<Prepared>,
}

struct Prepared {
    dataset: dataset::Dataset,
    requests: Arc<[PreparedRequest]>,
    tokenizer: Option<Arc<Tokenizer>>,
    tokenizer_id: Option<String>,
}

/// A tokenizer spec from the manifest: a path relative to the manifest's folder when one
/// exists there, else as written (an absolute path or a Hugging Face id).
fn tokenizer_spec(loaded: &LoadedManifest) -> String {
    let m = &loaded.manifest;
    let spec = m.tokenizer.as_deref().unwrap_or(&m.model);
    let relative = loaded.base_dir().join(spec);
    if relative.exists() {
        relative.display().to_string()
    } else {
        spec.to_owned()
    }
}

fn prepare(loaded: &LoadedManifest) -> anyhow::Result<Prepared> {
    let m = &loaded.manifest;
    let spec_str = tokenizer_spec(loaded);
    let tokenizer = match Tokenizer::load(&spec_str) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) if m.dataset.kind == DatasetKind::Random => {
            return Err(e.context(format!(
                "the random dataset needs a tokenizer; set `tokenizer` in the manifest (tried {spec_str})"
            )))
        }
        Err(e) => {
            eprintln!("warning: no tokenizer ({e:#}); token counts are estimates");
            None
        }
    };
    let d = &m.dataset;
    let path = |p: &Option<std::path::PathBuf>| {
        loaded
            .base_dir()
            .join(p.as_deref().unwrap_or(Path::new("")))
    };
    let spec = match d.kind {
        DatasetKind::Sharegpt => dataset::DatasetSpec::ShareGpt {
            path: path(&d.path),
            output_len: d.output_len.map(u64::from),
        },
        DatasetKind::Jsonl => dataset::DatasetSpec::Jsonl {
            path: path(&d.path),
            output_len: d.output_len.map(u64::from),
        },
        DatasetKind::Random => dataset::DatasetSpec::Random {
            input_len: u64::from(d.input_len.unwrap_or(1)),
            output_len: u64::from(d.output_len.unwrap_or(1)),
            range_ratio: d.range_ratio.unwrap_or(0.0),
        },
    };
    let data = dataset::load(
        &spec,
        m.load.num_prompts as usize,
        m.load.seed,
        tokenizer.as_deref(),
    )
    .context("preparing the request set")?;
    let requests: Arc<[PreparedRequest]> = data.requests.clone().into();
    Ok(Prepared {
        dataset: data,
        requests,
        tokenizer_id: tokenizer.as_ref().map(|_| spec_str),
        tokenizer,
    })
}

impl CellRunner for LoadGenRunner {
    async fn run(&self, req: CellRequest<'_>) -> anyhow::Result<RunResult> {
        let m = &req.loaded.manifest;
        let prepared = self
            .prepared
            .get_or_try_init(|| async { prepare(req.loaded) })
            .await?;
        let rate = req.cell.rate.as_f64();
        let arrival = match m.load.arrival {
            manifest::Arrival::Poisson => schedule::Arrival::Poisson,
            manifest::Arrival::Constant => schedule::Arrival::Constant,
            manifest::Arrival::Gamma => schedule::Arrival::Gamma {
                burstiness: m.load.burstiness.unwrap_or(1.0),
            },
        };
        let n = prepared.requests.len();
        if n == 0 {
            bail!("the dataset produced no requests");
        }
        let offsets = schedule::arrival_offsets(n, rate, arrival, m.load.seed)?;
        let v = req.variant;
        let deployment = DeploymentInfo {
            variant_id: Some(v.id.clone()),
            mode: v.mode.to_string(),
            label: v.label.clone(),
            gpus: v.gpus,
            simulated: req.simulated,
            base_url: req.entry_url.to_owned(),
        };
        let api = match m.load.api {
            manifest::Api::Completions => Api::Completions,
            manifest::Api::Chat => Api::Chat,
        };
        let mut spec = LoadSpec::new(
            deployment,
            api,
            &req.plan.served_model_name,
            &prepared.dataset,
            prepared.requests.clone(),
            offsets.into(),
            rate,
            arrival,
            m.load.seed,
        );
        spec.warmup = m.load.warmup as usize;
        spec.max_concurrency = m.load.max_concurrency.map(|c| c as usize);
        spec.timeout = Duration::from_secs_f64(m.load.timeout_s);
        spec.ignore_eos = m.load.ignore_eos || m.dataset.kind == DatasetKind::Random;
        spec.tokenizer = prepared.tokenizer.clone();
        spec.tokenizer_id = prepared.tokenizer_id.clone();
        spec.topology = topology(v);
        spec.label = Some(v.label.clone());
        Ok(load::execute(&spec, &NoProgress).await?)
    }
}

/// The original suite's topology keys for a variant.
fn topology(v: &crate::plan::Variant) -> Topology {
    match v.mode {
        Mode::Simple => {
            let s = v.role(RoleKind::Serve).expect("simple has a serve role");
            Topology {
                num_prefill_instances: s.instances,
                num_decode_instances: s.instances,
                tensor_parallel_size: s.tp,
                prefiller_tp_size: s.tp,
                decoder_tp_size: s.tp,
            }
        }
        Mode::Nixl | Mode::Lmcache => {
            let p = v.role(RoleKind::Prefill).expect("prefill role");
            let d = v.role(RoleKind::Decode).expect("decode role");
            Topology {
                num_prefill_instances: p.instances,
                num_decode_instances: d.instances,
                tensor_parallel_size: p.tp,
                prefiller_tp_size: p.tp,
                decoder_tp_size: d.tp,
            }
        }
    }
}

/// Render the report of a finished run folder into its `report/`.
pub fn render_report(run_dir: &Path) -> anyhow::Result<()> {
    let outcome = crate::report::report_run_folder(run_dir).map_err(anyhow::Error::new)?;
    eprintln!(
        "report: {} ({} files)",
        outcome.out_dir.join("index.html").display(),
        outcome.files.len()
    );
    Ok(())
}
