//! Object identifiers Puppet uses, and the short names puppetserver knows them by (§4.2).

/// Puppet's enterprise arc 1.3.6.1.4.1.34380.
pub const PUPPET_ARC: &[u64] = &[1, 3, 6, 1, 4, 1, 34380];
/// Registered certificate extensions (trusted facts): 1.3.6.1.4.1.34380.1.1.
pub const PP_REG_CERT_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 1];
/// Private certificate extensions: 1.3.6.1.4.1.34380.1.2.
pub const PP_PRIV_CERT_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 2];
/// Authorization extensions: 1.3.6.1.4.1.34380.1.3.
pub const PP_AUTH_CERT_EXT: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 3];
/// `pp_cli_auth`: grants access to the CA admin API.
pub const PP_CLI_AUTH: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 3, 39];
/// `pp_auth_auto_renew`: a CSR attribute saying the agent can renew.
pub const PP_AUTH_AUTO_RENEW: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 3, 2];
/// subjectAltName.
pub const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
/// extKeyUsage.
pub const EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
/// Netscape comment.
pub const NETSCAPE_COMMENT: &[u64] = &[2, 16, 840, 1, 113730, 1, 13];
/// PKCS#9 challengePassword attribute.
pub const CHALLENGE_PASSWORD: &[u64] = &[1, 2, 840, 113549, 1, 9, 7];
/// PKCS#9 extensionRequest attribute.
pub const EXTENSION_REQUEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 14];
/// rsaEncryption (SubjectPublicKeyInfo algorithm).
pub const KEY_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
/// id-dsa.
pub const KEY_DSA: &[u64] = &[1, 2, 840, 10040, 4, 1];
/// id-ecPublicKey.
pub const KEY_EC: &[u64] = &[1, 2, 840, 10045, 2, 1];
/// prime192v1 (P-192).
pub const CURVE_P192: &[u64] = &[1, 2, 840, 10045, 3, 1, 1];
/// prime256v1 (P-256).
pub const CURVE_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
/// secp384r1 (P-384).
pub const CURVE_P384: &[u64] = &[1, 3, 132, 0, 34];
/// md2WithRSAEncryption.
pub const SIG_MD2_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 2];
/// md4WithRSAEncryption.
pub const SIG_MD4_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 3];
/// md5WithRSAEncryption.
pub const SIG_MD5_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 4];
/// md5WithRSASignature (OIW).
pub const SIG_MD5_RSA_OLD: &[u64] = &[1, 3, 14, 3, 2, 25];
/// sha1WithRSAEncryption.
pub const SIG_SHA1_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 5];
/// sha1WithRSASignature (OIW).
pub const SIG_SHA1_RSA_OLD: &[u64] = &[1, 3, 14, 3, 2, 29];
/// ecdsa-with-SHA1.
pub const SIG_ECDSA_SHA1: &[u64] = &[1, 2, 840, 10045, 4, 1];
/// dsa-with-sha1.
pub const SIG_DSA_SHA1: &[u64] = &[1, 2, 840, 10040, 4, 3];

const REGISTERED_NAMES: [&str; 26] = [
    "pp_uuid",
    "pp_instance_id",
    "pp_image_name",
    "pp_preshared_key",
    "pp_cost_center",
    "pp_product",
    "pp_project",
    "pp_application",
    "pp_service",
    "pp_employee",
    "pp_created_by",
    "pp_environment",
    "pp_role",
    "pp_software_version",
    "pp_department",
    "pp_cluster",
    "pp_provisioner",
    "pp_region",
    "pp_datacenter",
    "pp_zone",
    "pp_network",
    "pp_securitypolicy",
    "pp_cloudplatform",
    "pp_apptier",
    "pp_hostname",
    "pp_owner",
];

/// Dotted text form of an OID.
pub fn dotted(oid: &[u64]) -> String {
    let parts: Vec<String> = oid.iter().map(u64::to_string).collect();
    parts.join(".")
}

/// Parses a dotted OID (`1.3.6.1`); `None` when it is not one.
pub fn parse_dotted(s: &str) -> Option<Vec<u64>> {
    let arcs: Option<Vec<u64>> = s.split('.').map(|p| p.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2)
}

/// Whether `oid` lies strictly below `arc`.
pub fn is_under(oid: &[u64], arc: &[u64]) -> bool {
    oid.len() > arc.len() && oid.starts_with(arc)
}

/// puppetserver's short name for a Puppet OID, if it has one.
pub fn short_name(oid: &[u64]) -> Option<&'static str> {
    if is_under(oid, PP_REG_CERT_EXT) && oid.len() == PP_REG_CERT_EXT.len() + 1 {
        let n = oid[PP_REG_CERT_EXT.len()];
        return usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| REGISTERED_NAMES.get(i).copied());
    }
    if is_under(oid, PP_AUTH_CERT_EXT) && oid.len() == PP_AUTH_CERT_EXT.len() + 1 {
        return match oid[PP_AUTH_CERT_EXT.len()] {
            1 => Some("pp_authorization"),
            2 => Some("pp_auth_auto_renew"),
            13 => Some("pp_auth_role"),
            39 => Some("pp_cli_auth"),
            _ => None,
        };
    }
    None
}

/// The OID of a short name (`pp_role`), or of a dotted OID given as text.
pub fn from_name(name: &str) -> Option<Vec<u64>> {
    if let Some(i) = REGISTERED_NAMES.iter().position(|n| *n == name) {
        let mut oid = PP_REG_CERT_EXT.to_vec();
        oid.push(i as u64 + 1);
        return Some(oid);
    }
    let auth = match name {
        "pp_authorization" => Some(1),
        "pp_auth_auto_renew" => Some(2),
        "pp_auth_role" => Some(13),
        "pp_cli_auth" => Some(39),
        _ => None,
    };
    if let Some(n) = auth {
        let mut oid = PP_AUTH_CERT_EXT.to_vec();
        oid.push(n);
        return Some(oid);
    }
    parse_dotted(name)
}

/// The name to show for an OID: its short name, else the dotted form.
pub fn display_name(oid: &[u64]) -> String {
    short_name(oid).map_or_else(|| dotted(oid), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip() {
        assert_eq!(short_name(&[1, 3, 6, 1, 4, 1, 34380, 1, 1, 1]), Some("pp_uuid"));
        assert_eq!(short_name(&[1, 3, 6, 1, 4, 1, 34380, 1, 1, 26]), Some("pp_owner"));
        assert_eq!(short_name(&[1, 3, 6, 1, 4, 1, 34380, 1, 1, 27]), None);
        assert_eq!(short_name(PP_CLI_AUTH), Some("pp_cli_auth"));
        assert_eq!(
            from_name("pp_role").as_deref(),
            Some(&[1, 3, 6, 1, 4, 1, 34380, 1, 1, 13][..])
        );
        assert_eq!(from_name("pp_cli_auth").as_deref(), Some(PP_CLI_AUTH));
        assert_eq!(from_name("1.2.3").as_deref(), Some(&[1, 2, 3][..]));
        assert_eq!(from_name("nonsense"), None);
        assert_eq!(display_name(&[1, 2, 3, 4, 5]), "1.2.3.4.5");
    }
}
