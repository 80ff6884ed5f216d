//! Runs every row of the shared conformance corpus (`shared/conformance`,
//! beside the repository) through `offline::run` and compares the output with
//! tcpdump 4.99.3's, line by line. A line may stop at `length N` where tcpdump
//! goes on with application-layer text; every other line must be identical.

use std::path::{Path, PathBuf};

use clap::Parser;
use tcptrace::cli::Args;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// Whether `actual` is `expected` cut right after its `length N` field, with
/// only application-layer text left out.
fn is_app_layer_cut(expected: &str, actual: &str) -> bool {
    let Some(rest) = expected.strip_prefix(actual) else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(idx) = actual.rfind(", length ") else { return false };
    let num = &actual[idx + ", length ".len()..];
    !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && (rest.starts_with(':') || rest.starts_with(' '))
}

fn compare(expected: &str, actual: &str) -> Result<(), String> {
    let exp: Vec<&str> = expected.split_inclusive('\n').collect();
    let act: Vec<&str> = actual.split_inclusive('\n').collect();
    let mut errors = Vec::new();
    for i in 0..exp.len().max(act.len()) {
        match (exp.get(i), act.get(i)) {
            (Some(e), Some(a)) => {
                if e == a {
                    continue;
                }
                let (e1, a1) = (e.strip_suffix('\n'), a.strip_suffix('\n'));
                match (e1, a1) {
                    (Some(e1), Some(a1)) if is_app_layer_cut(e1, a1) => {}
                    _ => errors.push(format!("line {}:\n  expected: {e:?}\n  actual:   {a:?}", i + 1)),
                }
            }
            (Some(e), None) => errors.push(format!("line {}: missing, expected {e:?}", i + 1)),
            (None, Some(a)) => errors.push(format!("line {}: extra line {a:?}", i + 1)),
            (None, None) => unreachable!(),
        }
        if errors.len() >= 8 {
            errors.push("(more differences not shown)".into());
            break;
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}

#[test]
fn cut_rule() {
    assert!(is_app_layer_cut("a, length 5: HTTP", "a, length 5"));
    assert!(is_app_layer_cut("a, length 58 17177+ A?", "a, length 58"));
    assert!(is_app_layer_cut("a, length 5", "a, length 5"));
    assert!(!is_app_layer_cut("a, length 50", "a, length 5"));
    assert!(!is_app_layer_cut("a, win 5, length 0", "a, win 5"));
}

/// Runs every row of a manifest (`capture`, `arguments`, `expected output`,
/// paths relative to `dir`); returns the number of rows and the failures.
fn run_manifest(dir: &Path, manifest: &str, strip_tcp: bool) -> (usize, Vec<String>) {
    // SAFETY: the tests of this binary only ever set TZ to the same value.
    unsafe { std::env::set_var("TZ", "UTC") };
    let manifest = std::fs::read_to_string(dir.join(manifest))
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(manifest).display()));
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (args_text, expected_file) = (cols[1], cols[2]);
        let mut argv: Vec<String> = args_text.split_whitespace().map(str::to_string).collect();
        if strip_tcp {
            assert_eq!(argv.pop().as_deref(), Some("tcp"), "row {line}: arguments should end in 'tcp'");
        } else {
            argv.push("-r".into());
            argv.push(cols[0].into());
        }
        // Paths in the manifest are relative to the corpus directory.
        if let Some(i) = argv.iter().position(|a| a == "-r") {
            argv[i + 1] = dir.join(&argv[i + 1]).display().to_string();
        }
        // State lines are tcptrace's own, not tcpdump's.
        argv.push("--no-states".into());
        let args = Args::try_parse_from(std::iter::once("tcptrace".to_string()).chain(argv))
            .unwrap_or_else(|e| panic!("row {args_text}: {e}"));
        let mut out = Vec::new();
        let run = tcptrace::offline::run(&args, &mut out);
        let actual = String::from_utf8_lossy(&out);
        // Set TCPTRACE_CONFORMANCE_DUMP=DIR to keep the outputs for diffing.
        if let Some(dump) = std::env::var_os("TCPTRACE_CONFORMANCE_DUMP") {
            let name = Path::new(expected_file).file_name().unwrap();
            std::fs::write(Path::new(&dump).join(name), &out).unwrap();
        }
        let expected = std::fs::read_to_string(dir.join(expected_file)).unwrap();
        rows += 1;
        if let Err(e) = run {
            failures.push(format!("{args_text}: error {e:#}"));
            continue;
        }
        if let Err(diff) = compare(&expected, &actual) {
            failures.push(format!("{args_text} (vs {expected_file}):\n{diff}"));
        }
    }
    (rows, failures)
}

#[test]
fn corpus() {
    let (rows, failures) = run_manifest(&corpus_dir(), "MANIFEST.tsv", true);
    assert_eq!(rows, 68, "MANIFEST.tsv should have 68 rows");
    assert!(failures.is_empty(), "{} of {rows} conformance rows differ:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Captures made for this repository (`tests/crafted/make_crafted.py`), with
/// tcpdump 4.99.3's output for each.
#[test]
fn crafted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crafted");
    let (rows, failures) = run_manifest(&dir, "CASES.tsv", false);
    assert!(rows > 0);
    assert!(failures.is_empty(), "{} of {rows} crafted cases differ:\n\n{}", failures.len(), failures.join("\n\n"));
}
