//! Server metrics around and during each rate: the full `/metrics` text of every instance
//! before and after, and the load gauges (running, waiting, KV-cache use) sampled every second,
//! so a reader can see queueing and KV pressure behind a latency curve.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Gauges worth following over time (both spellings of the KV-cache gauge across versions).
const GAUGES: &[&str] = &[
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
];

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t_s: f64,
    pub component: String,
    pub gauges: BTreeMap<String, f64>,
}

/// Sum of every series of `name` in a Prometheus text exposition (labels ignored).
pub fn gauge_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Sum of the series of `name` whose labels include `label="value"`.
pub fn labelled_sum(text: &str, name: &str, label: &str, value: &str) -> Option<f64> {
    let needle = format!("{label}=\"{value}\"");
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') {
            continue;
        }
        let Some((labels, number)) = rest.rsplit_once('}') else {
            continue;
        };
        if !labels.contains(&needle) {
            continue;
        }
        if let Ok(v) = number.trim().parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Prompt tokens a decoder got by KV transfer and computed itself (vLLM's
/// `prompt_tokens_by_source_total`), or `None` when this vLLM does not export them.
pub async fn kv_sources(url: &str) -> Option<(f64, f64)> {
    let text = fetch(&reqwest::Client::new(), url).await?;
    let name = "vllm:prompt_tokens_by_source_total";
    Some((
        labelled_sum(&text, name, "source", "external_kv_transfer")?,
        labelled_sum(&text, name, "source", "local_compute").unwrap_or(0.0),
    ))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .get(format!("{url}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Each component's full `/metrics` text, by component (those that answered).
pub async fn snapshot(components: &[(String, String)]) -> BTreeMap<String, String> {
    let client = reqwest::Client::new();
    let mut texts = BTreeMap::new();
    for (name, url) in components {
        if let Some(text) = fetch(&client, url).await {
            texts.insert(name.clone(), text);
        }
    }
    texts
}

/// Prompt tokens the instances took from their own prefix cache between two snapshots, and
/// all prompt tokens they accounted for (vLLM's `prompt_tokens_by_source_total`); `None` when
/// the servers do not export it or saw no prompt tokens.
pub fn prefix_cache_share(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Option<(f64, f64)> {
    let name = "vllm:prompt_tokens_by_source_total";
    let (mut hits, mut total) = (0.0, 0.0);
    for (component, a) in after {
        let b = before.get(component).map(String::as_str).unwrap_or("");
        let delta = |f: &dyn Fn(&str) -> Option<f64>| f(a).unwrap_or(0.0) - f(b).unwrap_or(0.0);
        hits += delta(&|t| labelled_sum(t, name, "source", "local_cache_hit"));
        total += delta(&|t| gauge_sum(t, name));
    }
    (total > 0.0).then_some((hits, total))
}

/// Sample the gauges of every component every `period` until told to stop.
pub fn spawn_sampler(
    components: Vec<(String, String)>,
    period: Duration,
) -> (watch::Sender<bool>, JoinHandle<Vec<Sample>>) {
    let (tx, mut rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let mut samples = Vec::new();
        loop {
            for (name, url) in &components {
                if let Some(text) = fetch(&client, url).await {
                    let gauges: BTreeMap<String, f64> = GAUGES
                        .iter()
                        .filter_map(|g| gauge_sum(&text, g).map(|v| (g.to_string(), v)))
                        .collect();
                    if !gauges.is_empty() {
                        samples.push(Sample {
                            t_s: start.elapsed().as_secs_f64(),
                            component: name.clone(),
                            gauges,
                        });
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = rx.wait_for(|stop| *stop) => break,
            }
        }
        samples
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::gauge_sum;
    use std::collections::BTreeMap;

    #[test]
    fn prefix_cache_share_is_the_rate_s_delta_over_all_instances() {
        let text = |hit: f64, compute: f64| {
            format!(
                "vllm:prompt_tokens_by_source_total{{engine=\"0\",source=\"local_cache_hit\"}} {hit}\n\
                 vllm:prompt_tokens_by_source_total{{engine=\"0\",source=\"local_compute\"}} {compute}\n"
            )
        };
        let snap = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let before = snap(&[("a", text(100.0, 1000.0)), ("b", text(0.0, 0.0))]);
        let after = snap(&[("a", text(400.0, 1600.0)), ("b", text(100.0, 900.0))]);
        assert_eq!(
            super::prefix_cache_share(&before, &after),
            Some((400.0, 1900.0))
        );
        // an older vLLM without the counter, or no traffic
        let plain = snap(&[("a", "vllm:num_requests_running 0\n".to_string())]);
        assert_eq!(super::prefix_cache_share(&plain, &plain), None);
    }

    #[test]
    fn labelled_series_are_selected_by_label() {
        let text = "vllm:prompt_tokens_by_source_total{engine=\"0\",source=\"local_compute\"} 5.0\n\
                    vllm:prompt_tokens_by_source_total{engine=\"0\",source=\"external_kv_transfer\"} 1538.0\n";
        let name = "vllm:prompt_tokens_by_source_total";
        assert_eq!(
            super::labelled_sum(text, name, "source", "external_kv_transfer"),
            Some(1538.0)
        );
        assert_eq!(
            super::labelled_sum(text, name, "source", "local_compute"),
            Some(5.0)
        );
        assert_eq!(
            super::labelled_sum(text, name, "source", "local_cache_hit"),
            None
        );
    }

    #[test]
    fn gauges_are_summed_over_labels_and_names_match_exactly() {
        let text = "# HELP vllm:num_requests_running x\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n\
                    vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2.0\n\
                    vllm:num_requests_running_total 99\n\
                    vllm:kv_cache_usage_perc 0.25\n";
        assert_eq!(gauge_sum(text, "vllm:num_requests_running"), Some(5.0));
        assert_eq!(gauge_sum(text, "vllm:kv_cache_usage_perc"), Some(0.25));
        assert_eq!(gauge_sum(text, "vllm:num_requests_waiting"), None);
    }
}
