//! `ca-bench` end to end on a tiny run: it starts its own `ca-server`, runs every phase and writes the
//! `--json` file whose ids and fields the benchmark checks read. (Figures are not judged here: speed
//! goals live in BENCHMARKS.md, never in timed tests.)

use std::process::{Command, Stdio};

#[test]
fn ca_bench_runs_every_phase_and_writes_its_json() {
    let bench = crate::harness::ca_binary().with_file_name("ca-bench");
    assert!(
        bench.exists(),
        "{} missing: scripts/test builds the workspace",
        bench.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = Command::new(&bench)
        .args([
            "--key-type",
            "ec-p256",
            "--csrs",
            "40",
            "--duration",
            "0.2",
            "--list-size",
            "200",
        ])
        .args(["--revoke-sizes", "0,100", "--concurrency", "4", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = both_streams(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("srv CPU ms") && text.contains("one raw ec-p256 signature"),
        "{text}"
    );
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(run["ceiling_per_s"].as_f64().unwrap() > 0.0, "{run}");
    assert!(run["ceiling_per_s_one_core"].as_f64().unwrap() > 0.0, "{run}");
    let phases = run["phases"].as_array().unwrap();
    let phase = |id: &str| {
        phases
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("no phase {id} in {run}"))
    };
    for id in [
        "submit",
        "sign",
        "bulk",
        "revoke_0",
        "revoke_100",
        "raw_sign_serial_0",
        "raw_sign_serial_100",
        "list_all",
        "cold_start",
        "rss_idle",
        "rss_peak",
        "ocsp_kept",
        "ocsp_nonce",
        "crl_get",
    ] {
        let p = phase(id);
        for field in ["name", "count", "ops_per_s", "p50_ms", "p99_ms"] {
            assert!(!p[field].is_null(), "{id}.{field} in {p}");
        }
    }
    assert_eq!(phase("sign")["count"], 40);
    assert!(phase("sign")["ratio"].as_f64().unwrap() > 0.0);
    for id in ["submit", "sign", "bulk", "revoke_0", "ocsp_nonce"] {
        let cpu = phase(id)["server_cpu_ms_per_op"].as_f64();
        assert!(
            cpu.is_some_and(|c| c > 0.0),
            "{id}: the server's CPU per operation: {}",
            phase(id)
        );
    }
    // Where the signing phases' time went: the server's CPU by thread role, and the ceiling measured
    // right before and right after the phase.
    assert!(
        text.contains("where the time of the signing phases goes"),
        "{text}"
    );
    for id in ["sign", "bulk"] {
        let p = phase(id);
        let by = &p["server_cpu_ms_per_op_by_thread"];
        assert!(by["signing"].as_f64().is_some_and(|c| c > 0.0), "{id}: {p}");
        for role in ["requests", "database", "other"] {
            assert!(by[role].as_f64().is_some_and(|c| c >= 0.0), "{id}.{role}: {p}");
        }
        let around = p["ceiling_around_per_s"].as_array().unwrap();
        assert_eq!(around.len(), 2, "{p}");
        assert!(around.iter().all(|c| c.as_f64().is_some_and(|c| c > 0.0)), "{p}");
        assert!(p["ratio_around"].as_f64().is_some_and(|r| r > 0.0), "{p}");
        // The server's signing rounds in the phase, from its /metrics.
        assert!(p["signing_rounds"].as_u64().is_some_and(|n| n > 0), "{p}");
        assert!(
            p["signing_round_ms_mean"].as_f64().is_some_and(|ms| ms > 0.0),
            "{p}"
        );
        // The signatures' CPU time during the phase, from the server's /metrics: the ceiling at the
        // machine's speed during the phase, and the phase's ratio to it.
        let sig_ms = p["signature_cpu_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id}: {p}"));
        assert!(sig_ms > 0.0, "{p}");
        let at_speed = p["ceiling_at_speed_per_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("{id}: {p}"));
        let cores = run["cores"].as_f64().unwrap();
        assert!(
            (at_speed - cores * 1000.0 / sig_ms).abs() < 1e-6 * at_speed,
            "{p}"
        );
        let r = p["ratio_at_speed"].as_f64().unwrap();
        assert!(
            (r - p["ops_per_s"].as_f64().unwrap() / at_speed).abs() < 1e-9,
            "{p}"
        );
    }
    assert!(
        text.contains("ms of CPU each during the phase, a ceiling of"),
        "{text}"
    );
    assert!(phase("rss_idle")["rss_mb"].as_f64().unwrap() > 1.0);
    assert!(phase("rss_peak")["rss_mb"].as_f64().unwrap() >= phase("rss_idle")["rss_mb"].as_f64().unwrap());
}

/// `--pkcs11-module`: the same phases again with the CA key in a SoftHSM token (`backend` `hsm`).
#[test]
fn ca_bench_runs_again_with_the_ca_key_in_a_softhsm_token() {
    let bench = crate::harness::ca_binary().with_file_name("ca-bench");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "4711",
            "--so-pin",
            "123456",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (scripts/test installs softhsm2)");
    assert!(init.status.success());
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "4711\n").unwrap();
    let json = dir.path().join("run.json");
    let out = Command::new(&bench)
        .args([
            "--key-type",
            "ec-p256",
            "--csrs",
            "20",
            "--duration",
            "0.1",
            "--list-size",
            "50",
        ])
        .args([
            "--revoke-sizes",
            "0",
            "--concurrency",
            "2",
            "--pkcs11-module",
            "/usr/lib/softhsm/libsofthsm2.so",
        ])
        .args(["--pkcs11-token", "bench", "--pkcs11-pin-file"])
        .arg(&pin)
        .arg("--json")
        .arg(&json)
        .env("SOFTHSM2_CONF", &conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = both_streams(&out);
    assert!(out.status.success(), "{text}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let phases = run["phases"].as_array().unwrap();
    for backend in ["sqlite", "hsm"] {
        let sign = phases
            .iter()
            .find(|p| p["id"] == "sign" && p["backend"] == backend)
            .unwrap_or_else(|| panic!("no {backend} sign phase: {run}"));
        assert_eq!(sign["count"], 20, "{sign}");
        assert!(phases
            .iter()
            .any(|p| p["id"] == "revoke_0" && p["backend"] == backend));
    }
}

/// A finished command's stdout then stderr, as text.
fn both_streams(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
