use super::*;

use crate::load::dataset::test_support::{file, tiny};

fn spec(f: &tempfile::NamedTempFile, format: TraceFormat, block_size: u64) -> TraceSpec {
    TraceSpec {
        path: f.path().into(),
        format,
        block_size,
        output_len: None,
    }
}

fn err(f: &tempfile::NamedTempFile, format: TraceFormat, n: usize) -> String {
    let e = trace(&spec(f, format, 16), n, 0, &tiny(), &mut Vec::new()).unwrap_err();
    format!("{e:#}")
}

const MOONCAKE: &str = r#"{"timestamp": 0, "input_length": 40, "output_length": 5, "hash_ids": [1, 2, 3]}
{"timestamp": 250, "input_length": 37, "output_length": 6, "hash_ids": [1, 2, 4]}

{"timestamp": 1000, "input_length": 20, "output_length": 7, "hash_ids": [1, 9]}
{"timestamp": 1500, "input_length": 40, "output_length": 8, "hash_ids": [5, 2, 3]}
{"timestamp": 1501, "input_length": 12, "output_length": 9}
"#;

#[test]
fn mooncake_prompts_have_exact_lengths_and_share_exactly_their_common_leading_blocks() {
    let tok = tiny();
    let f = file(MOONCAKE);
    let t = trace(
        &spec(&f, TraceFormat::Mooncake, 16),
        5,
        7,
        &tok,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(t.offsets_s, [0.0, 0.25, 1.0, 1.5, 1.501]);
    let ids: Vec<Vec<u32>> = t
        .requests
        .iter()
        .map(|r| tok.encode(&r.prompt, true).unwrap())
        .collect();
    let lens: Vec<usize> = ids.iter().map(Vec::len).collect();
    assert_eq!(lens, [40, 37, 20, 40, 12]);
    let max: Vec<u64> = t.requests.iter().map(|r| r.max_tokens).collect();
    assert_eq!(max, [5, 6, 7, 8, 9]);
    assert!(t
        .requests
        .iter()
        .zip(&lens)
        .all(|(r, l)| r.prompt_tokens == *l as u64));
    let common = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    // [1,2,3] and [1,2,4]: two blocks of 16 shared, the third differs.
    assert_eq!(common(&ids[0], &ids[1]), 32);
    // [1,9] (20 tokens: one block and 4 tokens of block 9): the first block only.
    assert_eq!(common(&ids[0], &ids[2]), 16);
    // [5,2,3]: block 2 at the same position, but after another first block: nothing shared
    // as a prefix (a prefix cache keys blocks by everything before them).
    assert!(common(&ids[0], &ids[3]) < 16);
    // The shared prefix is the same bytes, too.
    let bytes = |i: usize, n: usize| tok.decode(&ids[i][..n]).unwrap();
    assert!(t.requests[1].prompt.starts_with(&bytes(0, 32)));
    // Another seed: other texts, the same sharing.
    let u = trace(
        &spec(&f, TraceFormat::Mooncake, 16),
        5,
        8,
        &tok,
        &mut Vec::new(),
    )
    .unwrap();
    let other: Vec<Vec<u32>> = u
        .requests
        .iter()
        .map(|r| tok.encode(&r.prompt, true).unwrap())
        .collect();
    assert_eq!(common(&other[0], &other[1]), 32);
    assert!(common(&ids[0], &other[0]) < 16);
    // The same seed: the same texts.
    let again = trace(
        &spec(&f, TraceFormat::Mooncake, 16),
        5,
        7,
        &tok,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(again.requests, t.requests);
}

#[test]
fn malformed_mooncake_lines_name_the_file_line_and_field() {
    let cases = [
        ("{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 2}\nnot json\n", ":2:", "column"),
        ("{\"timestamp\": 0, \"output_length\": 2}\n", ":1:", "field `input_length` is missing"),
        ("{\"timestamp\": 0, \"input_length\": \"40\", \"output_length\": 2}\n", ":1:", "field `input_length`: \"40\" is not a non-negative integer"),
        ("{\"timestamp\": -5, \"input_length\": 4, \"output_length\": 2}\n", ":1:", "field `timestamp`"),
        ("{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 2, \"hash_ids\": [1, \"x\"]}\n", ":1:", "field `hash_ids`"),
        ("{\"timestamp\": 0, \"input_length\": 40, \"output_length\": 2, \"hash_ids\": [1]}\n", ":1:", "field `hash_ids`: 1 blocks, but input_length 40 in blocks of 16 tokens needs 3"),
        ("{\"timestamp\": 5, \"input_length\": 4, \"output_length\": 2}\n{\"timestamp\": 4, \"input_length\": 4, \"output_length\": 2}\n", ":2:", "goes back in time"),
        ("[1, 2]\n", ":1:", "not a JSON object"),
    ];
    for (content, place, what) in cases {
        let f = file(content);
        let e = err(&f, TraceFormat::Mooncake, content.lines().count());
        let path = f.path().display().to_string();
        assert!(e.contains(&format!("{path}{place}")), "{content:?}: {e}");
        assert!(e.contains(what), "{content:?}: {e}");
    }
}

#[test]
fn trace_files_are_read_with_caps_and_only_as_far_as_needed() {
    let long = format!(
        "{{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 2}}\n{}\n",
        "x".repeat(MAX_LINE_BYTES + 10)
    );
    let f = file(&long);
    let e = err(&f, TraceFormat::Mooncake, 2);
    assert!(e.contains(":2: line longer than"), "{e}");
    // The first request alone is read without reaching the long line.
    assert_eq!(
        read(f.path(), TraceFormat::Mooncake, 1, &mut Vec::new())
            .unwrap()
            .len(),
        1
    );
    // A line of exactly the cap (here padded with spaces JSON ignores) is still read.
    let record = "{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 2}";
    let at_cap = format!("{record}{}\n", " ".repeat(MAX_LINE_BYTES - record.len()));
    let f = file(&at_cap);
    assert_eq!(
        read(f.path(), TraceFormat::Mooncake, 1, &mut Vec::new())
            .unwrap()
            .len(),
        1
    );
    let f = file(MOONCAKE);
    let e = err(&f, TraceFormat::Mooncake, 6);
    assert!(
        e.contains("has 5 usable requests, fewer than the 6 needed"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        read(
            Path::new("/nonexistent/t.jsonl"),
            TraceFormat::Mooncake,
            1,
            &mut Vec::new()
        )
        .unwrap_err()
    );
    assert!(
        e.contains("trace file /nonexistent/t.jsonl: cannot read"),
        "{e}"
    );
}

#[test]
fn records_without_output_are_skipped_and_counted() {
    let f = file(
        "{\"timestamp\": 0, \"input_length\": 4, \"output_length\": 0}\n\
         {\"timestamp\": 1, \"input_length\": 4, \"output_length\": 3}\n",
    );
    let mut notes = Vec::new();
    let r = read(f.path(), TraceFormat::Mooncake, 1, &mut notes).unwrap();
    assert_eq!(r[0].line, 2);
    assert_eq!(
        notes,
        ["1 trace records skipped: output_length 0 (nothing to generate)"]
    );
}

#[test]
fn azure_csv_gives_offsets_from_its_date_times_and_exact_lengths() {
    let tok = tiny();
    let f = file(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n\
         2023-11-16 18:15:46.6805900,30,12\n\
         2023-11-16 18:15:46.9805900,25,0\n\
         2023-11-16 18:15:47.1805900,17,3\n",
    );
    let mut notes = Vec::new();
    let t = trace(&spec(&f, TraceFormat::Azure, 512), 2, 0, &tok, &mut notes).unwrap();
    assert_eq!(t.offsets_s.len(), 2);
    assert!((t.offsets_s[1] - 0.5).abs() < 1e-6, "{:?}", t.offsets_s);
    assert_eq!(tok.count(&t.requests[0].prompt).unwrap(), 30);
    assert_eq!(tok.count(&t.requests[1].prompt).unwrap(), 17);
    assert_eq!(t.requests[1].max_tokens, 3);
    assert!(notes[0].contains("1 trace records skipped: no generated tokens"));

    let f = file("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,30,x\n");
    let e = err(&f, TraceFormat::Azure, 1);
    assert!(e.contains(":2: field `GeneratedTokens`: \"x\""), "{e}");
    let f = file("TIMESTAMP,ContextTokens,GeneratedTokens\n16/11/2023,30,2\n");
    let e = err(&f, TraceFormat::Azure, 1);
    assert!(e.contains(":2: field `TIMESTAMP`"), "{e}");
    let f = file("time,in,out\n");
    let e = err(&f, TraceFormat::Azure, 1);
    assert!(
        e.contains(":1: not a azure trace: the header has no `TIMESTAMP` column"),
        "{e}"
    );
}

#[test]
fn burstgpt_csv_reads_seconds_and_named_columns_in_any_order() {
    let tok = tiny();
    let f = file(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
         5,ChatGPT,21,7,28,Conversation log\n\
         7.5,GPT-4,13,0,13,Conversation log\n\
         9.25,GPT-4,9,4,13,API log\n",
    );
    let t = trace(
        &spec(&f, TraceFormat::BurstGpt, 512),
        2,
        0,
        &tok,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(t.offsets_s, [0.0, 4.25]);
    assert_eq!(tok.count(&t.requests[0].prompt).unwrap(), 21);
    assert_eq!(t.requests[1].max_tokens, 4);
    let f = file(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,GPT-4,21,7\n",
    );
    let e = err(&f, TraceFormat::BurstGpt, 1);
    assert!(e.contains(":2: 4 fields where the header has 6"), "{e}");
}

#[test]
fn the_generator_reuses_prefixes_in_the_share_asked() {
    let sample = generate::SampleTrace {
        requests: 200,
        rate: 10.0,
        input_len: 1000,
        output_len: 4,
        block_size: 100,
        reuse: 0.3,
        prefixes: 5,
        seed: 1,
    };
    let records = sample.records().unwrap();
    assert_eq!(records.len(), 200);
    assert_eq!(sample.shared_blocks(), 3);
    let mut prefixes = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        assert_eq!(r.hash_ids.len(), 10);
        prefixes.insert(r.hash_ids[..3].to_vec());
        // The other 7 blocks are the request's own.
        for h in &r.hash_ids[3..] {
            assert!(seen.insert(*h), "block {h} reused outside a prefix");
        }
    }
    assert_eq!(prefixes.len(), 5);
    let span = records.last().unwrap().at_s;
    assert!(
        (span - 19.9).abs() < 0.1,
        "200 requests at 10/s span about 20 s: {span}"
    );
    assert!(records.windows(2).all(|w| w[0].at_s <= w[1].at_s));
}

/// The shipped sample is exactly what the generator writes (regenerate with
/// `VBENCH_REGENERATE_SAMPLES=1 cargo test --lib shipped_sample`).
#[test]
fn the_shipped_sample_trace_is_what_the_generator_writes() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces/mooncake-sample.jsonl");
    let records = generate::shipped_sample().records().unwrap();
    if std::env::var_os("VBENCH_REGENERATE_SAMPLES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        mooncake::write(&path, &records).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.jsonl");
    mooncake::write(&fresh, &records).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(&fresh).unwrap(),
        "the shipped sample differs from the generator's output"
    );
    // And it reads back as written.
    let back = read(&path, TraceFormat::Mooncake, records.len(), &mut Vec::new()).unwrap();
    assert_eq!(back, records);
}
