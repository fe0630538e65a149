//! puppetserver's infrastructure CRL (`enable-infra-crl`): a cadir made by the real `puppetserver ca`
//! CLI, with an `infra_inventory.txt`, is imported with its infrastructure nodes; agents are served a CRL of
//! those nodes' revocations only, while the server itself refuses every revoked certificate; `ca infra`
//! changes the list; export writes puppetserver's infra files back.

use hyper::{Method, StatusCode};

use crate::harness::{crl_check, openssl, TestCa};
use crate::migration::real_cli;
use crate::server::{As, TestServer};

const COMPILER: &str = "compiler-1.example.test";
const AGENT: &str = "agent-1.example.test";

fn serial_of(cert: &std::path::Path) -> u64 {
    let (_, text) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-serial"]);
    u64::from_str_radix(text.trim().trim_start_matches("serial="), 16).unwrap()
}

#[test]
fn infrastructure_crl_is_imported_served_changed_and_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = t.join("puppet.conf");
    let cadir = t.join("cadir");
    std::fs::write(
        &conf,
        format!(
            "[main]\ncertname = old-ca.example.test\nssldir = {ssl}\ncadir = {cadir}\nkeylength = 2048\n[server]\ncadir = {cadir}\n",
            ssl = t.join("ssl").display(),
            cadir = cadir.display()
        ),
    )
    .unwrap();
    real_cli(&conf, &["setup"]);
    for n in [COMPILER, AGENT] {
        real_cli(&conf, &["generate", "--certname", n, "--ca-client", "--force"]);
    }
    // `setup` made the (empty) infrastructure CRL; the node list is the admin's to write.
    assert!(cadir.join("infra_crl.pem").exists());
    std::fs::write(cadir.join("infra_inventory.txt"), format!("{COMPILER}\n")).unwrap();

    let data = t.join("data");
    let ssl = t.join("ssl");
    let ca = TestCa {
        tmp,
        data: data.clone(),
    };
    let out = ca.ca(&["import", "--cadir", cadir.to_str().unwrap()]).ok().stdout;
    assert!(out.contains("infra nodes:  1"), "{out}");
    assert_eq!(ca.ca(&["infra", "list"]).ok().stdout.trim(), COMPILER);

    let s = TestServer::launch(ca, "[ca]\nenable-infra-crl = true\n");
    let cert = |n: &str| ssl.join(format!("certs/{n}.pem"));
    let who = |n: &str| As::Cert(cert(n), ssl.join(format!("private_keys/{n}.pem")));
    let served = |name: &str| {
        let crl = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca");
        assert_eq!(crl.status, StatusCode::OK);
        let text = crl.text();
        assert_eq!(
            text.matches("BEGIN X509 CRL").count(),
            2,
            "infra CRL, then the root's"
        );
        let f = s.ca.path(name);
        std::fs::write(&f, &text).unwrap();
        f
    };

    // An agent revoked: refused by the server at once, but not in what agents download.
    s.ca.ca(&["revoke", AGENT]).ok();
    assert!(s
        .try_send(&who(AGENT), Method::GET, "/puppet-ca/v1/expirations", &[], b"")
        .is_err());
    let crl = served("crl-1.pem");
    assert!(crl_check(&s.ca.ca_cert(), &crl, &cert(AGENT)).is_ok());
    assert!(crl_check(&s.ca.ca_cert(), &crl, &cert(COMPILER)).is_ok());
    // The full CRL (the CLI's) has it.
    let full = s.ca.path("full.pem");
    std::fs::write(&full, s.ca.ca(&["crl"]).ok().stdout).unwrap();
    let err = crl_check(&s.ca.ca_cert(), &full, &cert(AGENT)).unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");

    // An infrastructure node revoked: in the served CRL too.
    s.ca.ca(&["revoke", COMPILER]).ok();
    let crl = served("crl-2.pem");
    let err = crl_check(&s.ca.ca_cert(), &crl, &cert(COMPILER)).unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    assert!(crl_check(&s.ca.ca_cert(), &crl, &cert(AGENT)).is_ok());

    // Listing the agent as infrastructure re-signs the infrastructure CRL with its revocation.
    let listed = s.ca.ca(&["infra", "add", AGENT]).ok().stdout;
    assert!(listed.contains(AGENT) && listed.contains(COMPILER), "{listed}");
    let crl = served("crl-3.pem");
    assert!(crl_check(&s.ca.ca_cert(), &crl, &cert(AGENT)).is_err());
    s.ca.ca(&["infra", "remove", AGENT]).ok();
    let crl = served("crl-4.pem");
    assert!(crl_check(&s.ca.ca_cert(), &crl, &cert(AGENT)).is_ok());
    s.ca.ca(&["infra", "add", "Not A Name"]).fails_with(1, "");

    // Export: puppetserver's infra files.
    let out = s.ca.path("exported");
    s.ca.ca(&["export", "--cadir", out.to_str().unwrap()]).ok();
    assert_eq!(
        std::fs::read_to_string(out.join("infra_inventory.txt")).unwrap(),
        format!("{COMPILER}\n")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("infra_serials")).unwrap(),
        format!("{}\n", serial_of(&cert(COMPILER)))
    );
    let exported = out.join("infra_crl.pem");
    assert!(crl_check(&s.ca.ca_cert(), &exported, &cert(COMPILER)).is_err());
    assert!(crl_check(&s.ca.ca_cert(), &exported, &cert(AGENT)).is_ok());
}

/// Without `enable-infra-crl`, agents get the full CRL even when infrastructure nodes are listed.
#[test]
fn without_enable_infra_crl_the_full_crl_is_served() {
    let s = TestServer::start();
    let agent = s.identity("plain-agent.example.test");
    s.ca.ca(&["infra", "add", "some-compiler.example.test"]).ok();
    s.ca.ca(&["revoke", "plain-agent.example.test"]).ok();
    let crl = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca");
    let f = s.ca.path("crl.pem");
    std::fs::write(&f, crl.text()).unwrap();
    let As::Cert(cert, _) = agent else { unreachable!() };
    assert!(crl_check(&s.ca.ca_cert(), &f, &cert).is_err());
}
