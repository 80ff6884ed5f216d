//! The deployment files in packaging/: the systemd unit and its environment
//! file, and the Kubernetes DaemonSet. Their options must parse, they must
//! grant exactly the capabilities tracing needs, and the checkers Debian
//! packages (systemd-analyze, yamllint) must accept them when installed.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use clap::Parser as _;
use tcptrace::cli::Args;

fn packaging(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(packaging(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The value of `KEY=` in a unit or environment file (quotes removed).
fn setting<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches('"')).collect()
}

fn parse(opts: &[String]) -> Args {
    let mut argv = vec!["tcptrace".to_string()];
    argv.extend(opts.iter().cloned());
    Args::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

#[test]
fn systemd_unit_and_environment_file() {
    let unit = read("tcptrace.service");
    let env = read("tcptrace.env");
    assert_eq!(setting(&unit, "ExecStart"), ["/usr/local/bin/tcptrace $TCPTRACE_OPTS"]);
    assert_eq!(setting(&unit, "EnvironmentFile"), ["-/etc/default/tcptrace"]);
    assert_eq!(setting(&unit, "AmbientCapabilities"), ["CAP_BPF CAP_NET_ADMIN CAP_PERFMON"]);
    assert_eq!(setting(&unit, "CapabilityBoundingSet"), ["CAP_BPF CAP_NET_ADMIN CAP_PERFMON"]);
    assert_eq!(setting(&unit, "DynamicUser"), ["yes"]);
    assert_eq!(setting(&unit, "NoNewPrivileges"), ["yes"]);
    let opts: Vec<String> = setting(&env, "TCPTRACE_OPTS")[0].split_whitespace().map(String::from).collect();
    let args = parse(&opts);
    assert_eq!(args.iface, ["any"]);
    assert!(args.json && args.wait);
    let metrics = args.metrics.expect("--metrics in the example");
    assert!(metrics.ip().is_loopback(), "the example binds metrics to loopback: {metrics}");
    assert_eq!(setting(&env, "RUST_LOG"), ["info"]);

    if have("systemd-analyze") {
        // verify wants the binary to exist: point it at the one built.
        let dir = std::env::temp_dir().join(format!("tcptrace-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tcptrace.service");
        std::fs::write(&path, unit.replace("/usr/local/bin/tcptrace", env!("CARGO_BIN_EXE_tcptrace"))).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !err.contains("tcptrace.service"), "systemd-analyze verify:\n{err}");
    } else {
        eprintln!("systemd-analyze not installed: unit not verified by it");
    }
}

/// The manifest as JSON, through python3's YAML parser (python3-yaml, which
/// yamllint depends on), or `None` when there is none.
fn daemonset_documents() -> Option<Vec<serde_json::Value>> {
    let script = "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))";
    let out = Command::new("python3")
        .args(["-c", script])
        .stdin(std::fs::File::open(packaging("daemonset.yaml")).unwrap())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("python3 yaml: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn daemonset_manifest() {
    if have("yamllint") {
        let out = Command::new("yamllint")
            .args(["-s", "-d", "{extends: default, rules: {line-length: {max: 120}}}"])
            .arg(packaging("daemonset.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "yamllint:\n{}", String::from_utf8_lossy(&out.stdout));
    } else {
        eprintln!("yamllint not installed: manifest style not checked");
    }
    let Some(docs) = daemonset_documents() else {
        eprintln!("no YAML parser (python3-yaml): manifest fields not checked");
        return;
    };
    let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").expect("a DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let spec = &ds["spec"];
    assert_eq!(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["BPF", "NET_ADMIN", "PERFMON"]));
    // The arguments parse, with the node's address for $(NODE_IP).
    let args: Vec<String> =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().replace("$(NODE_IP)", "10.0.0.1")).collect();
    let args = parse(&args);
    assert!(args.json, "JSON lines to standard output");
    let metrics = args.metrics.expect("--metrics");
    let port = &c["ports"][0];
    assert_eq!(port["hostPort"], metrics.port());
    assert_eq!(port["containerPort"], metrics.port());
    assert_eq!(c["env"][0]["name"], "NODE_IP");
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP");
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], metrics.port().to_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
}
