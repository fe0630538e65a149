//! The acceptance scenario: a new master's request with puppet alt names is refused without
//! the flag and signed with it; revoked, it shows in a CRL openssl accepts.

use crate::harness::{assert_crl_verifies, assert_verifies, crl_check, openssl, TestCa};

fn openssl_csr(ca: &TestCa, name: &str, san: Option<&str>) -> String {
    let key = ca.path(&format!("{name}.key"));
    let csr = ca.path(&format!("{name}.csr"));
    let subj = format!("/CN={name}");
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-subj",
        &subj,
        "-out",
        csr.to_str().unwrap(),
    ];
    let ext;
    if let Some(s) = san {
        ext = format!("subjectAltName={s}");
        args.extend(["-addext", &ext]);
    }
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl req: {text}");
    csr.display().to_string()
}

#[test]
fn master_with_alt_names_needs_the_flag_then_revocation_reaches_the_crl() {
    // The default key type (RSA-4096), as an operator would run it.
    let ca = TestCa::with_key("rsa-4096");
    let csr = openssl_csr(
        &ca,
        "master-2",
        Some("DNS:master-2,DNS:puppet,DNS:puppet.example.test"),
    );
    ca.ca(&["submit", &csr]).ok();

    let refused = ca.ca(&["sign", "master-2"]);
    refused
        .fails_with(1, "DNS:puppet, DNS:puppet.example.test")
        .fails_with(1, "--allow-dns-alt-names");

    let signed = ca.ca(&["sign", "--allow-dns-alt-names", "master-2"]).ok();
    assert!(
        signed.stdout.contains("Signed certificate for master-2"),
        "{signed:#?}"
    );
    let cert = ca.cert_file("master-2");
    assert_verifies(&ca.ca_cert(), &cert);
    let (_, text) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        text.contains("DNS:master-2, DNS:puppet, DNS:puppet.example.test"),
        "{text}"
    );

    let crl_before = ca.crl_file();
    assert!(crl_check(&ca.ca_cert(), &crl_before, &cert).is_ok());

    ca.ca(&["revoke", "master-2"]).ok();
    let crl = ca.crl_file();
    assert_crl_verifies(&ca.ca_cert(), &crl);
    let err = crl_check(&ca.ca_cert(), &crl, &cert).expect_err("revoked");
    assert!(err.contains("certificate revoked"), "{err}");
    let (_, crl_text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        crl_text.contains("Key Compromise") && crl_text.contains("CRL Number: \n                1"),
        "{crl_text}"
    );

    // One pending request too, so the listing shows every state.
    let pending = openssl_csr(&ca, "agent-1.example.test", None);
    ca.ca(&["submit", &pending]).ok();
    let json = ca.ca(&["list", "--all", "--format", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let names = |state: &str| -> Vec<String> {
        v[state]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("requested"), vec!["agent-1.example.test"]);
    assert_eq!(names("revoked"), vec!["master-2"]);
    assert_eq!(names("signed"), vec!["ca-admin", "ca.example.test"]);
    let m2 = &v["revoked"][0];
    assert_eq!(m2["state"], "revoked");
    assert_eq!(m2["serial_number"], 4);
    assert_eq!(
        m2["subject_alt_names"],
        serde_json::json!(["DNS:master-2", "DNS:puppet", "DNS:puppet.example.test"])
    );
    assert!(m2["not_after"].as_str().unwrap().ends_with("UTC"));
    assert_eq!(m2["fingerprints"]["default"], m2["fingerprint"]);
    let server = &v["signed"][1];
    assert_eq!(server["authorization_extensions"]["pp_cli_auth"], "true");
    assert_eq!(
        server["dns_alt_names"],
        serde_json::json!(["DNS:ca.example.test", "DNS:puppet"])
    );
}
