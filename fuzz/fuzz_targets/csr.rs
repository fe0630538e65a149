//! CSR bodies: `csr::parse` (PEM, as submitted) and `csr::parse_der`, then the signing policy on
//! whatever parses. What parses must re-encode to PEM that parses to the same request.
#![no_main]

use ca_server::ca::csr;
use ca_server::policy::signing::{check, evaluate, AltNameRule, SigningOptions, SigningPolicy};
use libfuzzer_sys::fuzz_target;

const PERMISSIVE: SigningOptions = SigningOptions {
    allow_dns_alt_names: true,
    allow_authorization_extensions: true,
};

fn policies() -> [SigningPolicy; 2] {
    let ruled = SigningPolicy {
        global: SigningOptions::default(),
        rules: vec![AltNameRule {
            label: "fuzz".into(),
            certnames: "*.example.*".into(),
            allow: vec![
                "DNS:puppet".into(),
                "DNS:*.example.test".into(),
                "IP:192.0.2.10".into(),
            ],
            authorization_extensions: vec!["pp_auth_role".into(), "1.3.6.1.4.1.34380.1.3.1".into()],
        }],
    };
    [SigningPolicy::default(), ruled]
}

fuzz_target!(|data: &[u8]| {
    for parsed in [csr::parse(data), csr::parse_der(data)] {
        let Ok(c) = parsed else {
            continue;
        };
        for policy in policies() {
            for flags in [PERMISSIVE, SigningOptions::default()] {
                let verdict = check(&c, &policy, flags);
                let e = evaluate(&c, &policy, flags);
                assert_eq!(e.sans.len(), c.sans.len());
                assert_eq!(e.extensions.len(), c.extensions.len());
                assert_eq!(verdict.is_ok(), e.result.is_ok());
                if let Ok(permit) = verdict {
                    assert_eq!(permit.certname(), c.common_name);
                }
            }
        }
        let again = csr::parse(c.pem.as_bytes()).expect("the stored PEM parses");
        assert_eq!(again.der, c.der);
        assert_eq!(again.common_name, c.common_name);
        assert_eq!(again.sans, c.sans);
    }
});
