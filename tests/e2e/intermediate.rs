//! Root + intermediate: the real agent in its default `chain` revocation mode needs a valid CRL for
//! every CA level; parents' CRLs are refreshed by upload or, with the root key present, by upkeep.

use hyper::{Method, StatusCode};
use time::Duration;

use crate::harness::TestCa;
use crate::migration::sh;
use crate::real_clients::bootstrap_until_signed;
use crate::server::{As, TestServer};

fn intermediate_server() -> TestServer {
    TestServer::launch(
        TestCa::with_args(&["--intermediate", "--dns-alt-names", "localhost,IP:127.0.0.1"]),
        "",
    )
}

#[test]
fn real_agent_bootstraps_against_an_intermediate_ca_in_chain_mode() {
    let s = intermediate_server();
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca")
            .text()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    let dir = tempfile::tempdir().unwrap();
    let name = "agent-i.example.test";
    bootstrap_until_signed(&s, dir.path(), name);
    let crl = std::fs::read_to_string(dir.path().join("ssl/crl.pem")).unwrap();
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 2, "one CRL per CA level");
}

#[test]
fn newer_root_crl_is_accepted_by_upload() {
    let s = intermediate_server();
    let data = s.data().to_path_buf();
    let work = s.ca.path("rootcrl");
    std::fs::create_dir_all(&work).unwrap();
    // A newer root CRL (number 5), made offline with the root key, as an operator would.
    sh(
        &format!(
            r#"
awk 'BEGIN{{n=0}} /BEGIN CERTIFICATE/{{n++}} n==2' {data}/ca_crt.pem > root.pem
touch index.txt; echo 05 > crlnumber
cat > o.cnf <<'EOF2'
[ca]
default_ca = d
[d]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 3650
crl_extensions = e
[e]
authorityKeyIdentifier = keyid:always
EOF2
openssl ca -config o.cnf -gencrl -keyfile {data}/root_key.pem -cert root.pem -out root_crl.pem 2>/dev/null
"#,
            data = data.display()
        ),
        &work,
    );
    let body = std::fs::read(work.join("root_crl.pem")).unwrap();
    let path = "/puppet-ca/v1/certificate_revocation_list";
    assert_eq!(
        s.send(&As::Anonymous, Method::PUT, path, &[], &body).status,
        StatusCode::FORBIDDEN
    );
    let bad = s.send(&As::Admin, Method::PUT, path, &[], b"not a crl");
    assert_eq!(
        (bad.status, bad.text().as_str()),
        (StatusCode::BAD_REQUEST, "No valid CRLs submitted.")
    );
    let ok = s.send(&As::Admin, Method::PUT, path, &[], &body);
    assert_eq!(
        (ok.status, ok.text().as_str()),
        (StatusCode::OK, "Successfully updated CRLs.")
    );
    let served = s
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    let f = s.ca.path("served.pem");
    std::fs::write(&f, &served).unwrap();
    let listed = s.ca.ca(&["crl", "--text"]).ok().stdout;
    assert!(listed.contains("CRL Number: 5"), "{listed}");
    assert!(
        served.contains(String::from_utf8_lossy(&body).trim()),
        "the uploaded root CRL is served"
    );
    // Our own CRL is never replaced by an upload: the intermediate's CRL is still number 0.
    assert!(listed.contains("CRL Number: 0"), "{listed}");
}

#[test]
fn root_crl_is_re_signed_when_the_root_key_is_present() {
    let f = crate::harness::FixedClockCa::new(true);
    let (a, clock, t0, dir) = (&f.authority, &f.clock, f.t0, &f.dir);
    let report = f.report.clone();
    f.rt.block_on(async {
        assert!(report.root_name.unwrap().starts_with("Puppet Root CA: "));
        assert_eq!(a.refresh_root_crl_if_due().await.unwrap(), None);
        clock.set(t0 + Duration::days(6));
        assert_eq!(a.refresh_root_crl_if_due().await.unwrap(), Some(1));
        let root_crl = a.store().parent_crls().await.unwrap().remove(0);
        let text = ca_server::ca::text::describe_crl(&root_crl).unwrap();
        assert!(
            text.contains("Puppet Root CA") && text.contains("CRL Number: 1"),
            "{text}"
        );
        std::fs::remove_file(dir.root_key()).unwrap();
        clock.set(t0 + Duration::days(20));
        assert_eq!(
            a.refresh_root_crl_if_due().await.unwrap(),
            None,
            "no root key: upload instead"
        );
        a.store().close().await;
    });
}
