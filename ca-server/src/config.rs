//! The configuration file (TOML, strict: unknown keys are refused) and the validated [`Settings`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::Duration;

use crate::authority::{Autosign, CaSettings};
use crate::ca::csr::San;
use crate::ca::duration;
use crate::ca::keys::KeyType;
use crate::ca::passphrase::PassphraseSource;
use crate::policy::access::IpPattern;
use crate::policy::{AltNameRule, SigningOptions, SigningPolicy};

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CA_CONFIG";

/// The configuration file to read: the one given (flag or `$CA_CONFIG`), else `<data-dir>/config.toml`
/// when it exists, else none (built-in defaults). The server and the `ca` CLI find it the same way.
pub fn find_config(explicit: Option<PathBuf>, data_dir: &Path) -> Option<PathBuf> {
    explicit.or_else(|| {
        let p = data_dir.join("config.toml");
        p.exists().then_some(p)
    })
}

/// The file in the data directory where the server records which configuration file it runs with
/// (its absolute path; empty for the built-in defaults), so that `ca` in local mode judges requests
/// with the configuration the server uses even when that file is elsewhere (`--config`).
pub const SERVER_CONFIG_RECORD: &str = "server-config";

/// Records (atomically) the configuration file the server runs with; see [`SERVER_CONFIG_RECORD`].
pub fn record_server_config(data_dir: &Path, config: Option<&Path>) -> std::io::Result<()> {
    let text = match config {
        Some(p) => std::path::absolute(p)?.display().to_string(),
        None => String::new(),
    };
    let tmp = data_dir.join(format!(".{SERVER_CONFIG_RECORD}.tmp"));
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, data_dir.join(SERVER_CONFIG_RECORD))
}

/// The configuration file the `ca` CLI reads in local mode: the one given (flag or `$CA_CONFIG`),
/// else the one the server of this data directory records it runs with (when it still exists), else
/// `<data-dir>/config.toml` when it exists, else none.
pub fn cli_config(explicit: Option<PathBuf>, data_dir: &Path) -> Option<PathBuf> {
    explicit
        .or_else(|| {
            let recorded = std::fs::read_to_string(data_dir.join(SERVER_CONFIG_RECORD)).ok()?;
            let p = PathBuf::from(recorded.trim());
            (!recorded.trim().is_empty() && p.is_file()).then_some(p)
        })
        .or_else(|| find_config(None, data_dir))
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8140";

/// A configuration problem, with the key or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax or schema error (unknown key, wrong type).
    #[error("invalid configuration {path}")]
    Parse {
        /// The file.
        path: String,
        /// toml's error (names the key and line).
        source: toml::de::Error,
    },
    /// A value is out of range or malformed.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value is refused by the parser of its kind (a duration, a key type, a glob), kept as the
    /// source.
    #[error("invalid configuration: {what}")]
    Value {
        /// The setting, and the value when it helps.
        what: String,
        /// Why.
        source: crate::error::Cause,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    ocsp_listen: Option<String>,
    certname: Option<String>,
    dns_alt_names: Option<Vec<String>>,
    key_type: Option<String>,
    server_key_type: Option<String>,
    #[serde(default)]
    ca: FileCa,
    #[serde(default)]
    authorization: FileAuthorization,
    #[serde(default)]
    limits: FileLimits,
    log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileCa {
    cert_ttl: Option<String>,
    crl_next_update: Option<String>,
    relying_party_crl_next_update: Option<String>,
    expiry_warning: Option<String>,
    #[serde(default)]
    crl_distribution_points: Vec<String>,
    #[serde(default)]
    ocsp_urls: Vec<String>,
    #[serde(default)]
    ca_issuers_urls: Vec<String>,
    pkcs11: Option<FilePkcs11>,
    allow_subject_alt_names: Option<bool>,
    allow_authorization_extensions: Option<bool>,
    allow_duplicate_certs: Option<bool>,
    allow_auto_renewal: Option<bool>,
    auto_renewal_cert_ttl: Option<String>,
    autosign: Option<FileAutosign>,
    autosign_timeout: Option<String>,
    autosign_max_concurrent: Option<usize>,
    key_passphrase_file: Option<PathBuf>,
    enable_infra_crl: Option<bool>,
    #[serde(default)]
    alt_name_rules: Vec<FileAltNameRule>,
}

/// `[ca.pkcs11]`: the CA key in a token. No PIN here: `pin-file`, or `CA_PKCS11_PIN`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FilePkcs11 {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileAutosign {
    Switch(bool),
    Path(PathBuf),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileAltNameRule {
    certnames: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    authorization_extensions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileAuthorization {
    auth_conf: Option<PathBuf>,
    legacy_auth_conf: Option<PathBuf>,
    allow_header_cert_info: Option<bool>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileLimits {
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    request_timeout: Option<String>,
    database_statement_timeout: Option<String>,
}

/// Where the access rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// puppetserver's default rules, built in.
    Defaults,
    /// A puppetserver HOCON auth.conf.
    Hocon(PathBuf),
    /// A Puppet 3 legacy auth.conf.
    Legacy(PathBuf),
}

/// Connection and request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent connections; a connection beyond them is accepted and closed at once.
    pub max_connections: usize,
    /// Concurrent connections from one source address (default: a quarter of `max_connections`).
    pub max_connections_per_address: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: std::time::Duration,
    /// Time allowed for each request's headers (also the keep-alive idle time).
    pub header_read_timeout: std::time::Duration,
    /// Time allowed for reading a request body.
    pub body_read_timeout: std::time::Duration,
    /// Time allowed for a whole request (body included).
    pub request_timeout: std::time::Duration,
    /// PostgreSQL: time allowed for each statement, a write transaction's wait for the CA's write
    /// lock included (a server that vanished without closing its connections never answers).
    pub database_statement_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 256,
            handshake_timeout: std::time::Duration::from_secs(10),
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(60),
            database_statement_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Validated settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where the state lives when not in the data directory's SQLite file (`postgresql://...`).
    pub database_url: Option<String>,
    /// Listen address.
    pub listen: SocketAddr,
    /// A plain-HTTP listener for OCSP and the relying parties' CRL (`ocsp-listen`), off by default.
    pub ocsp_listen: Option<SocketAddr>,
    /// Certname for a new CA (setup on an empty data directory).
    pub certname: Option<String>,
    /// Extra alt names of the server certificate made at setup.
    pub dns_alt_names: Vec<San>,
    /// Key type for a new CA.
    pub key_type: KeyType,
    /// Key type of the server's TLS certificate when it is made (default: `key_type`).
    pub server_key_type: KeyType,
    /// CA behaviour.
    pub ca: CaSettings,
    /// Access rules.
    pub auth: AuthSource,
    /// Trust `X-Client-*` headers from a TLS-terminating proxy.
    pub allow_header_cert_info: bool,
    /// The proxies whose `X-Client-*` headers are trusted in header mode (others' are ignored).
    pub trusted_proxies: Vec<IpPattern>,
    /// Limits.
    pub limits: Limits,
    /// `json` for JSON logs.
    pub json_logs: bool,
    /// The configuration file these settings were read from (none: built-in defaults).
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// The data directory, with the database URL when the state is in PostgreSQL.
    pub fn data_dir(&self) -> crate::datadir::DataDir {
        crate::datadir::DataDir::new(&self.data_dir)
            .with_database_url(self.database_url.clone())
            .with_statement_limit(Some(self.limits.database_statement_timeout))
    }
}

/// Overrides from the command line (they win over the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--certname`.
    pub certname: Option<String>,
    /// `--dns-alt-names`.
    pub dns_alt_names: Option<Vec<String>>,
    /// `--ca-key-passphrase-file`.
    pub key_passphrase_file: Option<PathBuf>,
    /// `--database-url` (or `$CA_DATABASE_URL`).
    pub database_url: Option<String>,
}

impl ConfigError {
    /// The setting `what` is refused because of `cause` (kept as the source).
    fn value(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> ConfigError {
        ConfigError::Value {
            what: what.into(),
            source: Box::new(cause),
        }
    }
}

fn dur(name: &str, v: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => duration::parse(&s).map_err(|e| ConfigError::value(name, e)),
    }
}

fn std_dur(
    name: &str,
    v: Option<String>,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let d = dur(
        name,
        v,
        Duration::try_from(default).unwrap_or(Duration::seconds(10)),
    )?;
    std::time::Duration::try_from(d).map_err(|_| ConfigError::Invalid(format!("{name}: out of range")))
}

impl Settings {
    /// The settings a reload puts in force: the configuration file read again, keeping what only a
    /// restart changes (listen address, data directory, database, limits, log format, the server's
    /// certname and alt names for a new CA, key types, the passphrase source).
    pub fn reloaded(&self) -> Result<Settings, ConfigError> {
        let ov = Overrides {
            data_dir: Some(self.data_dir.clone()),
            listen: Some(self.listen.to_string()),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        };
        let mut new = Settings::load(self.config_file.as_deref(), ov, self.data_dir.clone())?;
        new.certname.clone_from(&self.certname);
        new.dns_alt_names.clone_from(&self.dns_alt_names);
        new.key_type = self.key_type;
        new.server_key_type = self.server_key_type;
        new.limits = self.limits.clone();
        new.json_logs = self.json_logs;
        new.ca.key_passphrase = self.ca.key_passphrase.clone();
        Ok(new)
    }

    /// Loads `file` (if given) and applies the overrides. `default_data_dir` is used when neither sets one.
    pub fn load(
        file: Option<&Path>,
        ov: Overrides,
        default_data_dir: PathBuf,
    ) -> Result<Settings, ConfigError> {
        let config_file = file.map(Path::to_path_buf);
        let fc: FileConfig = match file {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    source: e,
                })?
            }
        };
        let mut settings = Self::from_file_config(fc, ov, default_data_dir)?;
        settings.config_file = config_file;
        Ok(settings)
    }

    fn from_file_config(
        fc: FileConfig,
        ov: Overrides,
        default_data_dir: PathBuf,
    ) -> Result<Settings, ConfigError> {
        let listen_text = ov
            .listen
            .or(fc.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("listen: '{listen_text}' is not ADDRESS:PORT")))?;
        let alt_texts = ov.dns_alt_names.or(fc.dns_alt_names).unwrap_or_default();
        let dns_alt_names = alt_texts
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                San::parse_alt_name(s)
                    .ok_or_else(|| ConfigError::Invalid(format!("dns-alt-names: invalid '{s}'")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_type = match fc.key_type {
            None => KeyType::default(),
            Some(k) => k.parse().map_err(|e| ConfigError::value("key-type", e))?,
        };
        let server_key_type = match fc.server_key_type {
            None => key_type,
            Some(k) => k.parse().map_err(|e| ConfigError::value("server-key-type", e))?,
        };
        let d = CaSettings::default();
        let rules = fc
            .ca
            .alt_name_rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.certnames.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!("ca.alt-name-rules[{}]: certnames is empty", i + 1)));
                }
                for a in &r.allow {
                    let shaped = a.starts_with("DNS:") || a.starts_with("IP:") || a.contains(':');
                    if !shaped {
                        return Err(ConfigError::Invalid(format!(
                            "ca.alt-name-rules[{}]: '{a}' must be written with its type, e.g. DNS:{a}",
                            i + 1
                        )));
                    }
                }
                for e in &r.authorization_extensions {
                    if crate::ca::oids::from_name(e).is_none() {
                        return Err(ConfigError::Invalid(format!(
                            "ca.alt-name-rules[{}]: unknown extension '{e}' (a pp_ short name or a dotted OID)",
                            i + 1
                        )));
                    }
                }
                let certnames = crate::policy::signing::CertnameGlob::new(&r.certnames)
                    .map_err(|e| {
                        ConfigError::value(
                            format!("ca.alt-name-rules[{}]: certnames '{}' is not a valid glob", i + 1, r.certnames),
                            e,
                        )
                    })?;
                Ok(AltNameRule {
                    label: format!("ca.alt-name-rules[{}] ({})", i + 1, r.certnames),
                    certnames,
                    allow: r.allow,
                    authorization_extensions: r.authorization_extensions,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let autosign = match fc.ca.autosign {
            None | Some(FileAutosign::Switch(false)) => Autosign::Off,
            Some(FileAutosign::Switch(true)) => Autosign::All,
            Some(FileAutosign::Path(p)) => Autosign::Path(p),
        };
        let ca = CaSettings {
            cert_ttl: dur("ca.cert-ttl", fc.ca.cert_ttl, d.cert_ttl)?,
            crl_lifetime: dur("ca.crl-next-update", fc.ca.crl_next_update, d.crl_lifetime)?,
            relying_crl_lifetime: dur(
                "ca.relying-party-crl-next-update",
                fc.ca.relying_party_crl_next_update,
                d.relying_crl_lifetime,
            )?,
            expiry_warning: dur("ca.expiry-warning", fc.ca.expiry_warning, d.expiry_warning)?,
            issuer_urls: {
                let urls = crate::ca::issue::IssuerUrls {
                    crl: fc.ca.crl_distribution_points,
                    ocsp: fc.ca.ocsp_urls,
                    ca_issuers: fc.ca.ca_issuers_urls,
                };
                urls.check().map_err(|e| {
                    ConfigError::value("ca.crl-distribution-points/ocsp-urls/ca-issuers-urls", e)
                })?;
                urls
            },
            pkcs11: fc.ca.pkcs11.map(|p| crate::ca::token::Pkcs11Settings {
                module: p.module,
                token_label: p.token_label,
                key_label: p.key_label,
                pin_file: p.pin_file,
            }),
            signing: SigningPolicy {
                global: SigningOptions {
                    allow_dns_alt_names: fc.ca.allow_subject_alt_names.unwrap_or(false),
                    allow_authorization_extensions: fc.ca.allow_authorization_extensions.unwrap_or(false),
                },
                rules,
            },
            autosign,
            autosign_timeout: std_dur("ca.autosign-timeout", fc.ca.autosign_timeout, d.autosign_timeout)?,
            autosign_max_concurrent: match fc.ca.autosign_max_concurrent {
                None => d.autosign_max_concurrent,
                Some(n) if (1..=1024).contains(&n) => n,
                Some(_) => {
                    return Err(ConfigError::Invalid(
                        "ca.autosign-max-concurrent must be between 1 and 1024".into(),
                    ))
                }
            },
            allow_duplicate_certs: fc.ca.allow_duplicate_certs.unwrap_or(false),
            allow_auto_renewal: fc.ca.allow_auto_renewal.unwrap_or(d.allow_auto_renewal),
            auto_renewal_cert_ttl: dur(
                "ca.auto-renewal-cert-ttl",
                fc.ca.auto_renewal_cert_ttl,
                d.auto_renewal_cert_ttl,
            )?,
            key_passphrase: PassphraseSource::resolve(ov.key_passphrase_file, fc.ca.key_passphrase_file),
            enable_infra_crl: fc.ca.enable_infra_crl.unwrap_or(false),
        };
        let auth = match (fc.authorization.auth_conf, fc.authorization.legacy_auth_conf) {
            (Some(_), Some(_)) => return Err(ConfigError::Invalid(
                "authorization: set auth-conf (puppetserver HOCON) or legacy-auth-conf (Puppet 3), not both"
                    .into(),
            )),
            (Some(p), None) => AuthSource::Hocon(p),
            (None, Some(p)) => AuthSource::Legacy(p),
            (None, None) => AuthSource::Defaults,
        };
        let dl = Limits::default();
        let max_connections = fc.limits.max_connections.unwrap_or(dl.max_connections);
        let limits = Limits {
            max_connections,
            max_connections_per_address: fc
                .limits
                .max_connections_per_address
                .unwrap_or((max_connections / 4).max(1)),
            handshake_timeout: std_dur(
                "limits.handshake-timeout",
                fc.limits.handshake_timeout,
                dl.handshake_timeout,
            )?,
            header_read_timeout: std_dur(
                "limits.header-read-timeout",
                fc.limits.header_read_timeout,
                dl.header_read_timeout,
            )?,
            body_read_timeout: std_dur(
                "limits.body-read-timeout",
                fc.limits.body_read_timeout,
                dl.body_read_timeout,
            )?,
            request_timeout: std_dur(
                "limits.request-timeout",
                fc.limits.request_timeout,
                dl.request_timeout,
            )?,
            database_statement_timeout: std_dur(
                "limits.database-statement-timeout",
                fc.limits.database_statement_timeout,
                dl.database_statement_timeout,
            )?,
        };
        if limits.database_statement_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "limits.database-statement-timeout must be longer than 0 s".into(),
            ));
        }
        if limits.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "limits.max-connections must be at least 1".into(),
            ));
        }
        if limits.max_connections_per_address == 0 {
            return Err(ConfigError::Invalid(
                "limits.max-connections-per-address must be at least 1".into(),
            ));
        }
        let trusted_proxies = fc
            .authorization
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|p| {
                IpPattern::parse(p)
                    .map_err(|e| ConfigError::Invalid(format!("authorization.trusted-proxies: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let database_url = ov.database_url.or(fc.database_url).filter(|u| !u.is_empty());
        if let Some(url) = &database_url {
            if !crate::storage::is_postgres_url(url) {
                return Err(ConfigError::Invalid(format!(
                    "database-url: {} is not a postgresql:// URL (without it, the state is in the data \
                     directory's SQLite database)",
                    crate::storage::redact_url(url)
                )));
            }
        }
        let json_logs = match fc.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "log-format: '{other}' (use text or json)"
                )))
            }
        };
        let ocsp_listen = fc
            .ocsp_listen
            .map(|t| {
                t.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Invalid(format!("ocsp-listen: '{t}' is not ADDRESS:PORT")))
            })
            .transpose()?;
        Ok(Settings {
            data_dir: ov.data_dir.or(fc.data_dir).unwrap_or(default_data_dir),
            database_url,
            listen,
            ocsp_listen,
            certname: ov.certname.or(fc.certname),
            dns_alt_names,
            key_type,
            server_key_type,
            ca,
            auth,
            allow_header_cert_info: fc.authorization.allow_header_cert_info.unwrap_or(false),
            trusted_proxies,
            limits,
            json_logs,
            config_file: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let fc: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "t".into(),
            source: e,
        })?;
        Settings::from_file_config(fc, Overrides::default(), PathBuf::from("/d"))
    }

    #[test]
    fn defaults_and_overrides() {
        let s = parse("").unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:8140");
        assert_eq!(s.data_dir, PathBuf::from("/d"));
        assert_eq!(s.auth, AuthSource::Defaults);
        assert_eq!(s.limits.max_connections_per_address, 256);
        let s = parse("[limits]\nmax-connections = 64\n[authorization]\ntrusted-proxies = [\"127.0.0.1\", \"10.1.0.0/16\"]")
            .unwrap();
        assert_eq!(s.limits.max_connections_per_address, 16);
        assert!(s.trusted_proxies[1].matches("10.1.2.3".parse().unwrap()));
        assert!(!s.trusted_proxies[0].matches("127.0.0.2".parse().unwrap()));
        assert_eq!(
            s.limits.database_statement_timeout,
            std::time::Duration::from_secs(60)
        );
        let s = parse("[limits]\ndatabase-statement-timeout = \"5s\"").unwrap();
        assert_eq!(
            s.limits.database_statement_timeout,
            std::time::Duration::from_secs(5)
        );
        assert_eq!(
            s.data_dir().statement_limit(),
            Some(std::time::Duration::from_secs(5))
        );
        let s = parse("listen = \"127.0.0.1:9\"\n[ca]\nallow-subject-alt-names = true\ncert-ttl = \"90d\"\n")
            .unwrap();
        assert!(s.ca.signing.global.allow_dns_alt_names);
        assert_eq!(s.ca.cert_ttl, Duration::days(90));
        let s = parse("[ca]\nkey-passphrase-file = \"/etc/ca/passphrase\"\n").unwrap();
        assert!(
            matches!(&s.ca.key_passphrase, PassphraseSource::File(p) if p.as_os_str() == "/etc/ca/passphrase"),
            "{:?}",
            s.ca.key_passphrase
        );
    }

    #[test]
    fn policy_rules_and_autosign() {
        let s = parse(
            "[ca]\nautosign = \"/etc/ca/autosign.conf\"\nautosign-timeout = \"5s\"\n\
             [[ca.alt-name-rules]]\ncertnames = \"compile-*.example.com\"\nallow = [\"DNS:puppet\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.ca.autosign,
            Autosign::Path(PathBuf::from("/etc/ca/autosign.conf"))
        );
        assert_eq!(s.ca.autosign_timeout, std::time::Duration::from_secs(5));
        assert_eq!(s.ca.autosign_max_concurrent, 4, "the default");
        let two = parse("[ca]\nautosign-max-concurrent = 2\n").unwrap();
        assert_eq!(two.ca.autosign_max_concurrent, 2);
        assert!(parse("[ca]\nautosign-max-concurrent = 0\n").is_err());
        assert_eq!(
            s.ca.signing.rules[0].label,
            "ca.alt-name-rules[1] (compile-*.example.com)"
        );
        assert_eq!(parse("[ca]\nautosign = true").unwrap().ca.autosign, Autosign::All);
        assert!(parse("[[ca.alt-name-rules]]\ncertnames = \"x\"\nallow = [\"puppet\"]").is_err());
        assert!(
            parse("[[ca.alt-name-rules]]\ncertnames = \"x\"\nauthorization-extensions = [\"nope\"]").is_err()
        );
        assert!(parse("[[ca.alt-name-rules]]\ncertnames = \"x\"\nbogus = 1").is_err());
        let bad = parse("[[ca.alt-name-rules]]\ncertnames = \"compile-[\"\nallow = [\"DNS:puppet\"]");
        assert!(bad.is_err_and(|e| e.to_string().contains("not a valid glob")));
        let e = parse("[ca]\ncert-ttl = \"5w\"").unwrap_err();
        assert_eq!(e.to_string(), "invalid configuration: ca.cert-ttl");
        assert!(
            std::error::Error::source(&e).is_some_and(|s| s.downcast_ref::<crate::ca::CaError>().is_some())
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = crate::error::Chain(&parse("lisen = \"x\"").unwrap_err()).to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = crate::error::Chain(&parse("[ca]\nallow-alt-names = true").unwrap_err()).to_string();
        assert!(e.contains("allow-alt-names"), "{e}");
        assert!(parse("listen = \"nope\"").is_err());
        assert!(parse("[ca]\ncert-ttl = \"5w\"").is_err());
        assert!(parse("[authorization]\nauth-conf = \"a\"\nlegacy-auth-conf = \"b\"").is_err());
        assert!(parse("[limits]\nmax-connections = 0").is_err());
        assert!(parse("[limits]\nmax-connections-per-address = 0").is_err());
        assert!(parse("[limits]\ndatabase-statement-timeout = \"0s\"").is_err());
        assert!(parse("[limits]\ndatabase-statement-timeout = \"soon\"").is_err());
        let e = parse("[authorization]\ntrusted-proxies = [\"10.0.0.0/33\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted-proxies"), "{e}");
    }
}
