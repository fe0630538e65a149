//! Every CSR of the fixture corpus gets its verdict through `ca submit` and `ca sign`; refused ones
//! leave nothing but an audit row; signed ones verify with openssl.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::{assert_verifies, fixture, TestCa};

struct Row {
    file: String,
    certname: String,
    stage: String,
    flags: Vec<String>,
    ok: bool,
    message: String,
}

fn rows() -> Vec<Row> {
    let text = std::fs::read_to_string(fixture("csr/expected.tsv")).expect("expected.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 6, "bad row {l:?}");
            Row {
                file: c[0].into(),
                certname: c[1].into(),
                stage: c[2].into(),
                flags: if c[3] == "-" {
                    vec![]
                } else {
                    c[3].split(' ').map(String::from).collect()
                },
                ok: c[4] == "ok",
                message: c[5].into(),
            }
        })
        .collect()
}

#[test]
fn every_corpus_csr_gets_its_verdict() {
    let rows = rows();
    assert!(rows.len() >= 20, "corpus too small: {}", rows.len());
    for row in rows {
        let ca = TestCa::new();
        let csr = fixture(&format!("csr/{}", row.file)).display().to_string();
        let what = format!("{} as {} ({} {:?})", row.file, row.certname, row.stage, row.flags);
        let submit = ca.ca(&["submit", &csr, "--certname", &row.certname]);
        if row.stage == "submit" {
            assert!(!row.ok, "submit rows are refusals");
            assert_eq!(submit.code, 1, "{what}: {submit:#?}");
            assert!(submit.stderr.contains(&row.message), "{what}: {submit:#?}");
            assert!(!ca.holds(&row.certname), "{what}: refused CSR left state");
            let audit = ca.audit(&row.certname);
            assert_eq!(audit.len(), 1, "{what}: one audit row");
            assert_eq!(
                (audit[0].action.as_str(), audit[0].outcome.as_str()),
                ("submit", "refused")
            );
            continue;
        }
        assert_eq!(submit.code, 0, "{what}: {submit:#?}");
        let mut args = vec!["sign".to_string(), row.certname.clone()];
        args.extend(row.flags.iter().cloned());
        let sign = ca.ca(&args);
        if !row.ok {
            assert_eq!(sign.code, 1, "{what}: {sign:#?}");
            assert!(sign.stderr.contains(&row.message), "{what}: {sign:#?}");
            let pending = ca.with_store(async |s| s.request(&row.certname).await.unwrap().is_some());
            assert!(pending, "{what}: the request stays pending");
            let signed = ca.with_store(async |s| s.current_certificate(&row.certname).await.unwrap());
            assert!(signed.is_none(), "{what}: nothing issued");
            let last = ca.audit(&row.certname).pop().expect("audit row");
            assert_eq!(
                (last.action.as_str(), last.outcome.as_str()),
                ("sign", "refused"),
                "{what}"
            );
            continue;
        }
        assert_eq!(sign.code, 0, "{what}: {sign:#?}");
        let cert = ca.cert_file(&row.certname);
        assert_verifies(&ca.ca_cert(), &cert);
        let pem = std::fs::read(&cert).unwrap();
        let der = pem::parse(&pem).unwrap().into_contents();
        let (_, parsed) = X509Certificate::from_der(&der).expect("x509-parser re-parses it");
        let sans: Vec<String> = parsed
            .extensions()
            .iter()
            .filter_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(s) => Some(
                    s.general_names
                        .iter()
                        .map(|g| match g {
                            GeneralName::DNSName(d) => format!("DNS:{d}"),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(
            sans.contains(&format!("DNS:{}", row.certname)),
            "{what}: SAN {sans:?}"
        );
        assert!(!ca.with_store(async |s| s.request(&row.certname).await.unwrap().is_some()));
    }
}
