//! NIXL's transfer counters as vLLM 0.26 exports them (snapshots vbench saved around one rate
//! of a real NIXL run on an H200): the cell's delta, the sum over instances, what the report
//! says of it, and what counts as trouble.

use std::collections::BTreeMap;
use std::path::Path;

use vbench::apply::cache::transfer;
use vbench::exec::metrics::NixlCounters;
use vbench::load::result::KvTransfer;
use vbench::report::summary::kv_transfer_text;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vllm-gpu/metrics")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_cells_transfers_are_the_difference_of_the_decoders_snapshots() {
    let before = fixture("nixl-decode-0-5qps-before.prom");
    let after = fixture("nixl-decode-0-5qps-after.prom");
    let d = NixlCounters::delta(Some(&before), &after).unwrap();
    // 150 measured + 8 warm-up requests, each a 1024-token prompt of 114,688 bytes per token.
    assert_eq!(d.transfers, 158.0);
    assert_eq!(d.bytes, 18_581_291_008.0 - 25_690_112.0);
    assert_eq!(d.bytes / d.transfers, 1024.0 * 114_688.0);
    assert!((d.xfer_time_s - (698.739_161 - 0.057_032)).abs() < 1e-6);
    // Cumulative histogram: nothing under 50 ms in this cell, 93 within 5 s, all 158 in +Inf.
    let at = |le: f64| d.xfer_buckets.iter().find(|b| b.0 == le).unwrap().1;
    assert_eq!(
        (at(0.05), at(1.0), at(5.0), at(f64::INFINITY)),
        (0.0, 15.0, 93.0, 158.0)
    );
    assert_eq!(
        d.failed_transfers + d.failed_notifications + d.expired_requests,
        0.0
    );
    // A server without NIXL metrics has none to give.
    assert_eq!(NixlCounters::read("vllm:num_requests_running 1\n"), None);
}

#[test]
fn the_variants_instances_are_summed_and_described() {
    let map = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let before = map(&[("decode-0", fixture("nixl-decode-0-5qps-before.prom"))]);
    // The prefiller exports the metrics too (all zero): it counts, and adds nothing.
    let after = map(&[
        ("decode-0", fixture("nixl-decode-0-5qps-after.prom")),
        ("prefill-0", fixture("nixl-prefill-0-5qps-after.prom")),
    ]);
    let t = transfer(&before, &after).unwrap();
    assert_eq!((t.instances, t.transfers), (2, 158.0));
    // 65 of 158 took over 5 s, vLLM's last finite bound: p90 is only known to be above it.
    assert_eq!(t.xfer_quantile_bound_s(0.9), Some(Err(5.0)));
    assert_eq!(t.xfer_quantile_bound_s(0.5), Some(Ok(5.0)));
    assert_eq!(t.xfer_quantile_bound_s(0.05), Some(Ok(0.75)));
    assert_eq!(
        kv_transfer_text(&t),
        "158 × mean 4422 ms (p90 > 5000 ms), 117.4 MB each"
    );
    assert_eq!(t.trouble(), None);
    // No instance with the counters: nothing to say.
    let bare = map(&[("serve-0", "vllm:num_requests_running 0\n".to_owned())]);
    assert_eq!(transfer(&bare, &bare), None);
}

#[test]
fn failures_and_expiry_are_named_and_repeats_add_up() {
    let t = KvTransfer {
        instances: 2,
        transfers: 10.0,
        bytes: 1e9,
        xfer_time_s: 0.2,
        xfer_time_buckets: vec![[0.01, 4.0], [0.05, 10.0]],
        failed_transfers: 2.0,
        failed_notifications: 0.0,
        expired_requests: 1.0,
        notifications_after_expiry: 0.0,
    };
    assert_eq!(
        t.trouble().as_deref(),
        Some(
            "2 failed transfers, 1 requests whose KV expired on the prefiller before a \
             decoder read it"
        )
    );
    assert_eq!(
        kv_transfer_text(&t),
        "10 × mean 20 ms (p90 ≤ 50 ms), 100 MB each; 2 failed transfers, 1 requests whose KV \
         expired on the prefiller before a decoder read it"
    );
    let two = t.merged(&t);
    assert_eq!((two.transfers, two.failed_transfers), (20.0, 4.0));
    assert_eq!(two.xfer_time_buckets, vec![[0.01, 8.0], [0.05, 20.0]]);
    assert_eq!(two.mean_xfer_ms(), t.mean_xfer_ms());
    // An instance without a histogram and without transfers (a prefiller) keeps the other's.
    let silent = KvTransfer {
        transfers: 0.0,
        bytes: 0.0,
        xfer_time_s: 0.0,
        xfer_time_buckets: vec![],
        ..t.clone()
    };
    assert_eq!(t.merged(&silent).xfer_time_buckets, t.xfer_time_buckets);
    assert_eq!(silent.merged(&t).xfer_time_buckets, t.xfer_time_buckets);
    // Histograms with other bounds are dropped, not mixed.
    let other = KvTransfer {
        xfer_time_buckets: vec![[0.02, 10.0]],
        ..t.clone()
    };
    assert!(t.merged(&other).xfer_time_buckets.is_empty());
}
