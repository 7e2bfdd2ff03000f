//! One cell's load: the manifest's dataset and load settings become a `LoadSpec` for it.
//!
//! The request set is prepared once per run, with room for every rate: rate *i* of the sweep
//! gets its own slice of it (its measured prompts, then its warm-up prompts), and every variant
//! gets the same slice at the same rate. No prompt is sent at two rates, so a server's prefix
//! cache cannot answer a later rate from an earlier rate's prompts (vLLM caches by default;
//! the first GPU run measured TTFT p50 26 ms instead of 75 ms at 8 req/s that way).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Events;
use crate::load::dataset::{
    PreparedSession, SessionSource, SessionsSpec, SharedPrefixSpec, ThinkTime, TraceFormat,
    TraceSpec,
};
use crate::load::{
    self, dataset, schedule, Api, DeploymentInfo, LoadSpec, PreparedRequest, Progress, RunResult,
    Tokenizer, Topology,
};
use crate::manifest::{self, DatasetKind, LoadedManifest, Mode};
use crate::plan::{Cell, Pace, Plan, RoleKind, Variant};

/// Everything one cell's load needs.
pub struct CellRequest<'a> {
    pub loaded: &'a LoadedManifest,
    pub plan: &'a Plan,
    pub variant: &'a Variant,
    pub cell: &'a Cell,
    pub entry_url: &'a str,
    pub simulated: bool,
    /// Ends the load early (Ctrl-C): what was measured until then comes back, marked.
    pub stop: load::Stop,
}

/// The run's request set, prepared once before anything is launched (a missing tokenizer or a
/// bad dataset is found before any GPU is used) and shared by every cell.
pub struct Workload {
    prepared: Prepared,
    /// The key every request carries (`target.api_key_env`), read once before the launch.
    api_key: Option<String>,
}

struct Prepared {
    dataset: dataset::Dataset,
    /// Its output lengths are to be kept exactly (`ignore_eos`).
    exact_output_lengths: bool,
    /// A trace's arrival offsets (seconds from its first request) for one slice, when the
    /// dataset is a trace.
    trace_offsets: Option<Vec<f64>>,
    /// One slice of `per_rate` requests per rate of the sweep, in sweep order.
    requests: Vec<PreparedRequest>,
    /// Multi-turn sessions, one per entry of `requests` (which holds their first turns).
    sessions: Option<Vec<PreparedSession>>,
    per_rate: usize,
    /// Distinct prompts in `requests` (fewer than its length when the dataset was too small).
    distinct: usize,
    tokenizer: Option<Arc<Tokenizer>>,
    tokenizer_id: Option<String>,
}

/// A tokenizer spec from the manifest: a path relative to the manifest's folder when one
/// exists there, else as written (an absolute path or a Hugging Face id).
fn tokenizer_spec(loaded: &LoadedManifest) -> String {
    let m = &loaded.manifest;
    crate::exec::deploy::local_tokenizer(m, loaded.base_dir())
        .unwrap_or_else(|| m.tokenizer.as_deref().unwrap_or(&m.model).to_owned())
}

/// The manifest's SLO as per-request objectives (for `request_goodput` and attainment).
pub(crate) fn slo_objectives(slo: &manifest::Slo) -> load::GoodputSlo {
    load::GoodputSlo {
        ttft_ms: Some(slo.ttft_ms),
        tpot_ms: Some(slo.tpot_ms),
        e2el_ms: None,
    }
}

fn prepare(loaded: &LoadedManifest, events: &dyn Events) -> anyhow::Result<Prepared> {
    let m = &loaded.manifest;
    let spec_str = tokenizer_spec(loaded);
    let tokenizer = match Tokenizer::load(&spec_str) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) if m.dataset.needs_tokenizer() => {
            return Err(e.context(format!(
            "the {} dataset needs a tokenizer; set `tokenizer` in the manifest (tried {spec_str})",
            m.dataset.kind.as_str()
        )))
        }
        Err(e) => {
            events.warning(&format!("no tokenizer ({e:#}); token counts are estimates"));
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
        DatasetKind::SharedPrefix => dataset::DatasetSpec::SharedPrefix(SharedPrefixSpec {
            groups: u64::from(d.groups.unwrap_or(1)),
            system_len: u64::from(d.system_prompt_len.unwrap_or(1)),
            question_len: u64::from(d.question_len.unwrap_or(1)),
            output_len: u64::from(d.output_len.unwrap_or(1)),
        }),
        DatasetKind::Trace => dataset::DatasetSpec::Trace(TraceSpec {
            path: path(&d.path),
            format: match d.format.unwrap_or(manifest::TraceFormat::Mooncake) {
                manifest::TraceFormat::Mooncake => TraceFormat::Mooncake,
                manifest::TraceFormat::Azure => TraceFormat::Azure,
                manifest::TraceFormat::Burstgpt => TraceFormat::BurstGpt,
            },
            block_size: u64::from(d.block_size.unwrap_or(manifest::defaults::TRACE_BLOCK_SIZE)),
            output_len: d.output_len.map(u64::from),
        }),
        DatasetKind::Sessions => dataset::DatasetSpec::Sessions(SessionsSpec {
            source: match &d.path {
                Some(_) => SessionSource::ShareGpt {
                    path: path(&d.path),
                    max_turns: d.turns.map(u64::from),
                    output_len: d.output_len.map(u64::from),
                },
                None => SessionSource::Synthetic {
                    turns: u64::from(d.turns.unwrap_or(1)),
                    system_len: u64::from(d.system_prompt_len.unwrap_or(0)),
                    question_len: u64::from(d.question_len.unwrap_or(1)),
                    output_len: u64::from(d.output_len.unwrap_or(1)),
                },
            },
            think_time_s: d.think_time_s.unwrap_or(0.0),
            think_time: match d.think_time {
                Some(manifest::ThinkTime::Fixed) => ThinkTime::Fixed,
                _ => ThinkTime::Exponential,
            },
        }),
    };
    let per_rate = m.load.num_prompts as usize + m.load.warmup as usize;
    // Every rate of every repeat gets its own prompts: a repeat of a prompt the server has
    // seen would be answered from its prefix cache.
    let rates = match &m.load.search {
        // One slot per batch the budget allows.
        Some(s) => crate::plan::SearchSpec::resolve(s, m).max_batches_total() as usize,
        None => crate::plan::sweep(&m.load).len().max(1) * m.load.repeats.max(1) as usize,
    };
    let (data, requests, sessions) = if per_slice_prefixes(&m.dataset) {
        slices_with_fresh_prefixes(&spec, per_rate, rates, m.load.seed, tokenizer.as_deref())?
    } else {
        let data = dataset::load(&spec, per_rate * rates, m.load.seed, tokenizer.as_deref())
            .context("preparing the request set")?;
        let requests = data.requests.clone();
        let sessions = data.sessions.clone();
        (data, requests, sessions)
    };
    // Slices with fresh prefixes share no text between rates, whatever they share within one.
    let distinct = if per_slice_prefixes(&m.dataset) {
        requests.len()
    } else {
        requests
            .iter()
            .map(|r| r.prompt.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    if distinct < requests.len() {
        events.warning(&format!(
            "the dataset has {distinct} distinct prompts for {} rates (and repeats) x \
             {per_rate} requests: prompts repeat, and a server's prefix cache can answer the repeats \
             (vLLM: --no-enable-prefix-caching in the deployment's extra_args prevents it)",
            rates
        ));
    }
    Ok(Prepared {
        exact_output_lengths: spec.exact_output_lengths(),
        trace_offsets: data.offsets_s.clone(),
        dataset: data,
        requests,
        sessions,
        per_rate,
        distinct,
        tokenizer_id: tokenizer.as_ref().map(|_| spec_str),
        tokenizer,
    })
}

/// Datasets whose reuse is the point (shared system prompts, a trace's prefix blocks, a
/// synthetic session's history): every slice has the same structure, but texts of its own, so
/// the prefix cache of one rate cannot serve the next while the reuse within a rate is exactly
/// the dataset's. ShareGPT sessions are sliced from one sample instead, like ShareGPT prompts:
/// a sample per slice would send the same conversations at several rates.
fn per_slice_prefixes(d: &manifest::Dataset) -> bool {
    d.kind.reuses_prefixes() && !(d.kind == DatasetKind::Sessions && d.path.is_some())
}

/// One dataset preparation per slice, each from its own seed (the manifest's for the first,
/// then mixed as repeats' arrival seeds are), concatenated.
#[allow(clippy::type_complexity)]
fn slices_with_fresh_prefixes(
    spec: &dataset::DatasetSpec,
    per_slice: usize,
    slices: usize,
    seed: u64,
    tokenizer: Option<&Tokenizer>,
) -> anyhow::Result<(
    dataset::Dataset,
    Vec<PreparedRequest>,
    Option<Vec<PreparedSession>>,
)> {
    let mut first: Option<dataset::Dataset> = None;
    let mut requests = Vec::with_capacity(per_slice * slices);
    let mut sessions: Option<Vec<PreparedSession>> = None;
    for slice in 0..slices {
        let slice_seed = arrival_seed(seed, slice as u64 + 1);
        let mut data = dataset::load(spec, per_slice, slice_seed, tokenizer)
            .context("preparing the request set")?;
        requests.extend(data.requests.iter().cloned());
        if let Some(s) = data.sessions.take() {
            sessions.get_or_insert_with(Vec::new).extend(s);
        }
        first.get_or_insert(data);
    }
    Ok((first.expect("at least one slice"), requests, sessions))
}

impl Workload {
    /// Load the tokenizer and the dataset and build the whole sweep's request set; an error is
    /// the input's fault.
    pub fn prepare(loaded: &LoadedManifest, events: &dyn Events) -> anyhow::Result<Workload> {
        let api_key = match &loaded.manifest.target.api_key_env {
            Some(name) => Some(load::api_key_from_env(name).with_context(|| {
                format!("{}: target.api_key_env = \"{name}\"", loaded.path.display())
            })?),
            None => None,
        };
        Ok(Workload {
            prepared: prepare(loaded, events)?,
            api_key,
        })
    }

    /// The API key of `target.api_key_env`, for every request to the deployment.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// A cell's slot in the request set and its slice: its measured prompts, then its
    /// warm-up prompts.
    fn slice(
        &self,
        m: &manifest::Manifest,
        cell: &Cell,
    ) -> anyhow::Result<(usize, &[PreparedRequest])> {
        let prepared = &self.prepared;
        let n = m.load.num_prompts as usize;
        let paces = crate::plan::sweep(&m.load);
        let sweep = paces.len().max(1);
        let repeat = cell.repeat.max(1) as usize;
        let slot = (repeat - 1) * sweep + pace_slot(&paces, cell.pace);
        let slice = prepared
            .requests
            .get(slot * prepared.per_rate..(slot + 1) * prepared.per_rate)
            .filter(|s| s.len() >= n && n > 0);
        let Some(slice) = slice else {
            bail!(
                "the dataset produced {} requests, fewer than the {} this rate needs",
                prepared.requests.len(),
                (slot + 1) * prepared.per_rate
            );
        };
        Ok((slot, slice))
    }

    /// What a prefix cache that never evicts could reuse of the prompts a cell sends, in the
    /// order the load sends them (its warm-up first, then the measured requests), with KV
    /// blocks of `block_size` tokens. `None` for chat requests (the server's chat template
    /// adds tokens vbench does not see) or without a tokenizer.
    pub fn ideal_reuse(
        &self,
        loaded: &LoadedManifest,
        cell: &Cell,
        block_size: u32,
    ) -> Option<load::result::IdealReuse> {
        let m = &loaded.manifest;
        // A session's later prompts hold the server's answers, which vbench cannot know here.
        if m.load.api != manifest::Api::Completions || m.dataset.kind == DatasetKind::Sessions {
            return None;
        }
        let tokenizer = self.prepared.tokenizer.as_ref()?;
        let (_, slice) = self.slice(m, cell).ok()?;
        let n = m.load.num_prompts as usize;
        let order = (0..m.load.warmup as usize)
            .map(|w| (n + w) % slice.len())
            .chain(0..n);
        // The server tokenizes a completion's prompt with its special tokens (a BOS).
        let ids: Vec<Vec<u32>> = order
            .map(|i| tokenizer.encode(&slice[i].prompt, true))
            .collect::<anyhow::Result<_>>()
            .ok()?;
        Some(load::cache_reuse::ideal_reuse(
            ids.iter().map(Vec::as_slice),
            block_size,
        ))
    }

    /// Run one cell's load, showing its requests on `progress`.
    pub async fn run(
        &self,
        req: CellRequest<'_>,
        progress: &dyn Progress,
    ) -> anyhow::Result<RunResult> {
        let m = &req.loaded.manifest;
        let prepared = &self.prepared;
        let arrival = match m.load.arrival {
            manifest::Arrival::Poisson => schedule::Arrival::Poisson,
            manifest::Arrival::Constant => schedule::Arrival::Constant,
            manifest::Arrival::Gamma => schedule::Arrival::Gamma {
                burstiness: m.load.burstiness.unwrap_or(1.0),
            },
        };
        let n = m.load.num_prompts as usize;
        let paces = crate::plan::sweep(&m.load);
        let sweep = paces.len().max(1);
        let repeat = req.cell.repeat.max(1) as usize;
        let (slot, slice) = self.slice(m, req.cell)?;
        let arrival_seed = arrival_seed(m.load.seed, repeat as u64);
        let requests: Arc<[PreparedRequest]> = slice.into();
        let range = slot * prepared.per_rate..(slot + 1) * prepared.per_rate;
        let sessions: Option<Arc<[PreparedSession]>> = match &prepared.sessions {
            Some(all) => match all.get(range) {
                Some(s) => Some(s.into()),
                None => bail!("the dataset produced fewer sessions than this rate needs"),
            },
            None => None,
        };
        let (offsets, rate) = match req.cell.pace {
            Pace::Rate(rate) => (
                schedule::arrival_offsets(n, rate.as_f64(), arrival, arrival_seed)?,
                rate.as_f64(),
            ),
            Pace::Speedup(speedup) => {
                let Some(trace) = &prepared.trace_offsets else {
                    bail!("a speedup cell needs a trace's arrival times");
                };
                schedule::replay_offsets(&trace[..n], speedup)?
            }
        };
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
            requests,
            offsets.into(),
            rate,
            arrival,
            arrival_seed,
        );
        spec.warmup = m.load.warmup as usize;
        if let Some(sessions) = sessions {
            spec.with_sessions(sessions);
        }
        spec.max_concurrency = m.load.max_concurrency.map(|c| c as usize);
        spec.timeout = Duration::from_secs_f64(m.load.timeout_s);
        if let Pace::Speedup(speedup) = req.cell.pace {
            spec.replaying_trace(speedup);
        }
        spec.ignore_eos = m.load.ignore_eos || prepared.exact_output_lengths;
        spec.tokenizer = prepared.tokenizer.clone();
        spec.tokenizer_id = prepared.tokenizer_id.clone();
        spec.topology = topology(v);
        spec.label = Some(v.label.clone());
        spec.goodput = Some(slo_objectives(&m.slo));
        if let (Some(key), Some(name)) = (&self.api_key, &m.target.api_key_env) {
            spec.api_key = Some(key.clone());
            spec.notes.push(format!(
                "every request carried an API key from ${name} (not recorded)"
            ));
        }
        let repeats = if per_slice_prefixes(&m.dataset) {
            "the dataset's structure (shared prefixes) is the same at every rate, its texts are \
             this rate's own"
                .to_string()
        } else if prepared.distinct < prepared.requests.len() {
            format!(
                "the dataset had only {} distinct prompts for all rates, so prompts repeat",
                prepared.distinct
            )
        } else {
            "no prompt is sent at two rates".to_string()
        };
        spec.notes.push(format!(
            "{} ({} of {} in the sweep{}): requests {}..{} of the seed-{} request set \
             (measured, then {} warm-up), arrivals from seed {arrival_seed}; {repeats}",
            req.cell.pace,
            slot % sweep + 1,
            sweep,
            if m.load.repeats > 1 {
                format!(", repeat {repeat} of {}", m.load.repeats)
            } else {
                String::new()
            },
            slot * prepared.per_rate,
            (slot + 1) * prepared.per_rate,
            m.load.seed,
            m.load.warmup
        ));
        spec.repeat = (m.load.repeats > 1).then_some(repeat as u32);
        Ok(load::execute_until(&spec, progress, req.stop).await?)
    }
}

/// The arrival seed of a cell's `repeat`-th run (a repeat, or a search's batch). Repeat 1
/// keeps the manifest's seed (the same instants as without repeats); later ones get a seed
/// mixed from both (SplitMix64), not `seed + k`: runs with seeds 0 and 1 would otherwise share
/// all their repeats but one, and look independent when they are not.
pub fn arrival_seed(seed: u64, repeat: u64) -> u64 {
    if repeat <= 1 {
        return seed;
    }
    let mut z = seed ^ repeat.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The position of `pace` in the manifest's sweep (0 when it is not there, e.g. a search's).
fn pace_slot(sweep: &[Pace], pace: Pace) -> usize {
    sweep.iter().position(|p| *p == pace).unwrap_or(0)
}

/// The original suite's topology keys for a variant.
fn topology(v: &Variant) -> Topology {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn loaded(dataset: &str, rates: &str) -> LoadedManifest {
        let text = format!(
            r#"
name = "t"
model = "m"
tokenizer = "{}/tests/fixtures/tiny-model"
[dataset]
{dataset}
[load]
rates = {rates}
num_prompts = 6
warmup = 2
[target]
backend = "sim"
[[deployment]]
mode = "simple"
"#,
            env!("CARGO_MANIFEST_DIR")
        );
        manifest::load_str(Path::new("t.toml"), &text, &[]).unwrap()
    }

    #[test]
    fn every_rate_gets_prompts_of_its_own_and_the_same_ones_for_every_variant() {
        let l = loaded(
            "kind = \"random\"\ninput_len = 16\noutput_len = 4",
            "[1, 2, 4]",
        );
        let p = prepare(&l, &super::super::Silent).unwrap();
        assert_eq!(p.per_rate, 8, "6 measured + 2 warm-up");
        assert_eq!(p.requests.len(), 24, "room for 3 rates");
        assert_eq!(p.distinct, 24);
        let paces = crate::plan::sweep(&l.manifest.load);
        let slots: Vec<usize> = paces.iter().map(|p| pace_slot(&paces, *p)).collect();
        assert_eq!(slots, [0, 1, 2]);
        let prompts = |slot: usize| -> HashSet<&str> {
            p.requests[slot * 8..(slot + 1) * 8]
                .iter()
                .map(|r| r.prompt.as_str())
                .collect()
        };
        assert!(prompts(0).is_disjoint(&prompts(1)));
        assert!(prompts(1).is_disjoint(&prompts(2)));
        // deterministic: a second preparation (another variant, a resumed run) is identical
        let again = prepare(&l, &super::super::Silent).unwrap();
        let same = p
            .requests
            .iter()
            .zip(&again.requests)
            .all(|(a, b)| a.prompt == b.prompt);
        assert!(same);
    }

    /// The first `n` tokens of each prompt of `slot`, as a set.
    fn prefixes(p: &Prepared, slot: usize, n: usize) -> HashSet<Vec<u32>> {
        let tok = p.tokenizer.as_ref().unwrap();
        p.requests[slot * p.per_rate..(slot + 1) * p.per_rate]
            .iter()
            .map(|r| tok.encode(&r.prompt, true).unwrap()[..n].to_vec())
            .collect()
    }

    #[test]
    fn shared_prefixes_are_shared_within_a_rate_and_never_between_rates() {
        let l = loaded(
            "kind = \"shared_prefix\"\ngroups = 2\nsystem_prompt_len = 40\nquestion_len = 8\n\
             output_len = 4",
            "[1, 2]",
        );
        let p = prepare(&l, &super::super::Silent).unwrap();
        assert_eq!(p.requests.len(), 16);
        assert_eq!(p.distinct, 16, "no text is repeated between rates");
        let (a, b) = (prefixes(&p, 0, 40), prefixes(&p, 1, 40));
        assert_eq!((a.len(), b.len()), (2, 2), "two groups per rate");
        assert!(a.is_disjoint(&b));
        assert!(p.trace_offsets.is_none());
    }

    #[test]
    fn a_trace_keeps_its_sharing_and_times_at_every_rate_with_texts_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        // Every request starts with block 7; the rest is its own.
        std::fs::write(
            &path,
            (0..8)
                .map(|i| {
                    format!(
                        "{{\"timestamp\": {}, \"input_length\": 24, \"output_length\": 3, \
                         \"hash_ids\": [7, {}]}}\n",
                        i * 100,
                        100 + i
                    )
                })
                .collect::<String>(),
        )
        .unwrap();
        let l = loaded(
            &format!(
                "kind = \"trace\"\nformat = \"mooncake\"\nblock_size = 16\npath = \"{}\"",
                path.display()
            ),
            "[1, 2]",
        );
        let p = prepare(&l, &super::super::Silent).unwrap();
        assert_eq!(p.requests.len(), 16);
        let (a, b) = (prefixes(&p, 0, 16), prefixes(&p, 1, 16));
        assert_eq!(
            (a.len(), b.len()),
            (1, 1),
            "block 7 is shared within a rate"
        );
        assert!(a.is_disjoint(&b), "but not between rates");
        assert_eq!(
            prefixes(&p, 0, 17).len(),
            8,
            "the second block is each request's own"
        );
        let offsets = p.trace_offsets.as_ref().unwrap();
        assert_eq!(offsets[..3], [0.0, 0.1, 0.2]);
        let (sent, rate) = schedule::replay_offsets(&offsets[..6], 2.0).unwrap();
        assert_eq!(sent[..3], [0.0, 0.05, 0.1]);
        assert!((rate - 6.0 / 0.25).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_dataset_too_small_for_every_rate_is_counted_as_repeating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            (0..10)
                .map(|i| format!("{{\"prompt\": \"prompt number {i}\", \"output_tokens\": 4}}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let l = loaded(
            &format!("kind = \"jsonl\"\npath = \"{}\"", path.display()),
            "[1, 2]",
        );
        let p = prepare(&l, &super::super::Silent).unwrap();
        assert_eq!(p.requests.len(), 16);
        assert_eq!(p.distinct, 10);
    }

    #[test]
    fn repeats_of_neighbouring_seeds_share_no_arrival_seed() {
        assert_eq!(arrival_seed(7, 1), 7);
        let a: HashSet<u64> = (1..=50).map(|k| arrival_seed(0, k)).collect();
        let b: HashSet<u64> = (1..=50).map(|k| arrival_seed(1, k)).collect();
        assert_eq!((a.len(), b.len()), (50, 50));
        assert!(a.is_disjoint(&b));
    }
}
