//! `ca --server URL ...`: the same commands over the HTTPS API with the admin certificate, with the same
//! output and exit codes as local mode.

use crate::harness::{assert_verifies, fixture};
use crate::server::TestServer;

#[test]
fn remote_mode_matches_local_mode() {
    let s = TestServer::start();
    let csr = |f: &str| fixture(&format!("csr/{f}")).display().to_string();
    s.remote_ca(&["submit", &csr("altnames.pem")]).ok();
    s.remote_ca(&["submit", &csr("rsa2048.pem")]).ok();
    s.remote_ca(&["submit", &csr("rsa2048.pem")])
        .fails_with(1, "already has a requested certificate");

    let remote = s.remote_ca(&["list"]).ok().stdout;
    let local = s.ca.ca(&["list"]).ok().stdout;
    assert_eq!(remote, local, "same listing both ways");
    let remote_json = s.remote_ca(&["list", "--all", "--format", "json"]).ok().stdout;
    assert_eq!(
        remote_json,
        s.ca.ca(&["list", "--all", "--format", "json"]).ok().stdout
    );

    s.remote_ca(&["sign", "master-2"])
        .fails_with(1, "--allow-dns-alt-names");
    s.remote_ca(&["sign", "--allow-dns-alt-names", "master-2"]).ok();
    s.remote_ca(&["sign", "ghost.example.test"])
        .fails_with(1, "Could not find certificate request for ghost.example.test");
    s.remote_ca(&["sign", "--all"]).ok();
    assert!(s
        .ca
        .ca(&["list", "--signed"])
        .ok()
        .stdout
        .contains("agent-rsa2048.example.test"));

    let printed = s.remote_ca(&["print", "master-2"]).ok().stdout;
    assert!(
        printed.contains("DNS:master-2, DNS:puppet, DNS:puppet.example.test"),
        "{printed}"
    );
    assert_eq!(
        s.remote_ca(&["fingerprint", "master-2"]).ok().stdout,
        s.ca.ca(&["fingerprint", "master-2"]).ok().stdout
    );

    s.remote_ca(&["revoke", "master-2", "--reason", "superseded"])
        .ok();
    let crl = s.remote_ca(&["crl", "--text"]).ok().stdout;
    assert!(crl.contains("Superseded"), "{crl}");
    s.remote_ca(&["revoke", "ghost.example.test"])
        .fails_with(1, "Invalid certificate subject.");
    s.remote_ca(&["clean", "agent-rsa2048.example.test"]).ok();
    assert!(!s
        .ca
        .ca(&["list", "--all"])
        .ok()
        .stdout
        .contains("agent-rsa2048.example.test"));
    s.remote_ca(&["clean", "ghost.example.test"])
        .fails_with(1, "ghost.example.test");

    let out = s.ca.path("remote-gen");
    s.remote_ca(&[
        "generate",
        "web-1.example.test",
        "--dns-alt-names",
        "www.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        out.to_str().unwrap(),
    ])
    .ok();
    assert_verifies(&s.ca.ca_cert(), &out.join("certs/web-1.example.test.pem"));
    assert!(s
        .ca
        .ca(&["print", "web-1.example.test"])
        .ok()
        .stdout
        .contains("DNS:web-1.example.test, DNS:www.example.test"));

    s.remote_ca(&["setup"]).fails_with(1, "data directory only");
    // Without the admin certificate the API says no.
    let agent_out = s.ca.path("agent-id");
    s.ca.ca(&[
        "generate",
        "plain.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        agent_out.to_str().unwrap(),
    ])
    .ok();
    let cert = agent_out.join("certs/plain.example.test.pem");
    let key = agent_out.join("private_keys/plain.example.test.pem");
    s.remote_ca(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "list",
    ])
    .fails_with(1, "Forbidden request");
}
