//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 success; 1 the operation failed (not found, refused by policy, invalid input);
2 usage error.

Local mode (default) works on the data directory's database; remote mode (--server URL) uses the
CA's HTTPS API with the admin certificate, with the same output and exit codes.

The data directory is --data-dir, else $CA_DATA_DIR, else /var/lib/ca for root and
~/.local/share/ca for other users.

An encrypted CA key takes its passphrase from --ca-key-passphrase-file FILE, else `key-passphrase-file`
in the [ca] section of the configuration, else the file named by $CA_KEY_PASSPHRASE_FILE, else
$CA_KEY_PASSPHRASE.";

/// `ca`: administer a Puppet-compatible certificate authority.
#[derive(Debug, Parser)]
#[command(name = "ca", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The CA's data directory (database, CA key, certificates).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CA_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (the server's TOML: signing policy, autosign). Default: the one the server of
    /// the data directory runs with, else <data-dir>/config.toml.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CA_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Local mode: the CA's state is in this PostgreSQL database (`postgresql://user@host/db`) instead of
    /// the data directory's SQLite file. Also `database-url` in the configuration file.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CA_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Local mode: file holding the passphrase of an encrypted CA key (one trailing newline is ignored).
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE")]
    pub ca_key_passphrase_file: Option<PathBuf>,
    /// Remote mode: the CA's HTTPS API (e.g. https://ca.example.com:8140) instead of the database.
    #[arg(long, global = true, help_heading = "Global options", value_name = "URL")]
    pub server: Option<String>,
    /// Remote mode: client certificate (default: <data-dir>/admin/cert.pem).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE",
        requires = "server"
    )]
    pub cert: Option<PathBuf>,
    /// Remote mode: client key (default: <data-dir>/admin/key.pem).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE",
        requires = "server"
    )]
    pub key: Option<PathBuf>,
    /// Remote mode: CA bundle to trust (default: <data-dir>/ca_crt.pem).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FILE",
        requires = "server"
    )]
    pub cacert: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable, as `puppetserver ca list`.
    #[default]
    Text,
    /// The puppetserver certificate-status JSON.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new CA: CA key and certificate, first CRL, server and admin certificates.
    Setup(SetupArgs),
    /// Import a puppetserver cadir or a Puppet 3 ssldir/ca (consistency-checked; safe to re-run).
    Import {
        /// The directory holding ca_crt.pem, ca_key.pem, ca_crl.pem, serial, inventory.txt, signed/ ...
        #[arg(long, value_name = "DIR")]
        cadir: PathBuf,
        /// Store the CA key encrypted with the passphrase (see --ca-key-passphrase-file). Without it, an
        /// encrypted Puppet CA key stays encrypted when a passphrase is given, else it is stored decrypted.
        #[arg(long)]
        encrypt_key: bool,
    },
    /// Copy the CA's whole state (certificates, requests, revocations, CRL, counters, audit log) to
    /// another database: PostgreSQL (`postgresql://...`) or a new SQLite file (`sqlite:///path` or a
    /// path). Stop the servers first; then point `database-url` at the destination.
    MigrateStore {
        /// The destination: a PostgreSQL URL holding no CA, or a SQLite file that does not exist yet.
        #[arg(long, value_name = "URL|FILE")]
        to: String,
    },
    /// Export the CA in puppetserver's cadir layout (the directory must be absent or empty).
    Export {
        /// Where to write it.
        #[arg(long, value_name = "DIR")]
        cadir: PathBuf,
    },
    /// Submit a PEM CSR from a file, exactly as an agent would over the API.
    Submit {
        /// The PEM CSR file.
        file: PathBuf,
        /// Submit under this name (default: the CSR's CN).
        #[arg(long)]
        certname: Option<String>,
    },
    /// List pending requests (default), or signed/revoked certificates.
    List {
        /// Requests and all certificates.
        #[arg(long, conflicts_with_all = ["signed", "revoked"])]
        all: bool,
        /// Signed (not revoked) certificates.
        #[arg(long)]
        signed: bool,
        /// Revoked certificates.
        #[arg(long)]
        revoked: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Sign pending requests.
    Sign(SignArgs),
    /// Revoke certificates (every unexpired certificate of each name).
    Revoke {
        /// Certnames.
        #[arg(required_unless_present = "serial")]
        names: Vec<String>,
        /// Revoke these serials (decimal, or hex with 0x), also of certificates this CA holds no copy
        /// of (listed only in an imported inventory); local mode.
        #[arg(long, value_name = "SERIAL", value_delimiter = ',')]
        serial: Vec<String>,
        /// RFC 5280 reason (keyCompromise, superseded, cessationOfOperation, ...).
        #[arg(long, default_value = "keyCompromise")]
        reason: String,
    },
    /// Revoke, then remove certificates and requests (like `puppetserver ca clean`).
    Clean {
        /// Certnames.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Generate a key and a certificate on the CA (like `puppet cert generate`).
    Generate {
        /// Certname.
        name: String,
        /// Alt names (comma-separated; `IP:` prefix for addresses). Giving them here is the permission.
        #[arg(long, value_delimiter = ',')]
        dns_alt_names: Vec<String>,
        /// Directory to write `certs/NAME.pem`, `certs/ca.pem` and `private_keys/NAME.pem` into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Key type: rsa-4096, rsa-2048 or ec-p256.
        #[arg(long, default_value = "rsa-4096")]
        key_type: String,
        /// Validity (5y, 90d, ...).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Print a certificate as text, then its PEM (`ca print ca` for the CA chain).
    Print {
        /// Certname, or `ca`.
        name: String,
    },
    /// Print the current CRL as PEM, or as text.
    Crl {
        /// Text instead of PEM.
        #[arg(long)]
        text: bool,
    },
    /// Explain the verdict for a pending request: each alt name and extension with the rule that allows or
    /// refuses it, and what autosign would do. Changes nothing.
    Check {
        /// Certname.
        name: String,
        /// Evaluate as if signing with --allow-dns-alt-names.
        #[arg(long)]
        allow_dns_alt_names: bool,
        /// Evaluate as if signing with --allow-authorization-extensions.
        #[arg(long)]
        allow_authorization_extensions: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove CRL entries of certificates that have expired (local mode).
    Prune {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the audit log (every decision, with its actor), or verify its hash chain (`ca audit verify`).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        /// `verify`: check that no record was changed or removed.
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only records about this certname.
        #[arg(long)]
        certname: Option<String>,
        /// Only records since this time: a date (2026-11-24), or a duration ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Write a consistent copy of the CA database to FILE, safe while the server runs.
    Backup {
        /// The new file.
        file: PathBuf,
    },
    /// Encrypt, re-encrypt or decrypt the CA key (and root key) in place (local mode).
    Key {
        /// What to do.
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Infrastructure nodes (compilers, replicas): their revocations make the infrastructure CRL,
    /// served to agents instead of the full CRL with `enable-infra-crl` (local mode).
    Infra {
        /// What to do.
        #[command(subcommand)]
        action: InfraAction,
    },
    /// Re-sign the CA certificate (and an intermediate's root) with the same key, subject and key
    /// identifier and a new validity, so that nothing issued needs re-issuing (local mode). Restart
    /// each server to serve it; see docs/lifecycle.md for the agents.
    ExtendCa {
        /// The new validity, from now.
        #[arg(long, default_value = "15y")]
        ttl: String,
    },
    /// Replace the CA key in three steps (local mode; docs/lifecycle.md has the runbook): `start`
    /// publishes a new CA certificate (same name, new key) beside the current one, `switch` signs with
    /// the new key while the old one stays trusted and keeps signing a CRL, `finish` drops the old one.
    Rollover {
        /// Which step.
        #[command(subcommand)]
        step: RolloverStep,
    },
    /// Renew the server's and the admin's own certificates (same keys and names, new validity; local
    /// mode). The running server serves the new one after a reload (SIGHUP); it also renews them by
    /// itself when less than 30 days remain.
    RenewOwn {
        /// Which one (default: both).
        #[arg(value_enum)]
        which: Option<OwnCert>,
    },
    /// List what expires when, soonest first: the CA certificates, the server's and admin's
    /// certificates, the CRLs and every current, unrevoked certificate.
    Expirations {
        /// Only what expires within this (30d, 12h, 1y...).
        #[arg(long, value_name = "DURATION")]
        within: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the fingerprint of a certificate (or pending request).
    Fingerprint {
        /// Certname, or `ca`.
        name: String,
        /// sha256, sha1 or sha512.
        #[arg(long, default_value = "sha256")]
        digest: String,
    },
}

/// `ca audit verify`.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the hash chain of the whole audit log.
    Verify,
}

/// `ca rollover`.
#[derive(Debug, Subcommand)]
pub enum RolloverStep {
    /// Make the new CA key and certificate (and the cross-certificates), and publish the certificate.
    Start {
        /// Key type of the new CA key: rsa-4096, rsa-2048 or ec-p256.
        #[arg(long, default_value = "rsa-4096")]
        key_type: String,
        /// Validity of the new CA certificate.
        #[arg(long, default_value = "15y")]
        ttl: String,
    },
    /// Sign with the new key from now on; the old CA stays trusted and signs a CRL too.
    Switch,
    /// Drop the old CA (once every agent has the new CA certificate); re-issue this data directory's
    /// server and admin certificates under the new key.
    Finish,
}

/// `ca renew-own`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OwnCert {
    /// `server/cert.pem`.
    Server,
    /// `admin/cert.pem`.
    Admin,
}

/// `ca infra`.
#[derive(Debug, Subcommand)]
pub enum InfraAction {
    /// List the infrastructure nodes.
    List,
    /// Add infrastructure nodes (and sign the infrastructure CRL).
    Add {
        /// Certnames.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove infrastructure nodes (and sign the infrastructure CRL).
    Remove {
        /// Certnames.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `ca key`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Encrypt the key files with a passphrase (PKCS#8, PBKDF2-HMAC-SHA256, AES-256-CBC), or change the
    /// passphrase of encrypted ones (the current one is read from the usual sources).
    Encrypt {
        /// File holding the new passphrase (default: the current passphrase source).
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Write the key files unencrypted (PKCS#8 PEM, mode 0600).
    Decrypt,
}

/// `ca setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The server's certname (default: this host's FQDN).
    #[arg(long)]
    pub certname: Option<String>,
    /// Extra alt names for the server certificate (comma-separated; `IP:` for addresses).
    #[arg(long, value_delimiter = ',')]
    pub dns_alt_names: Vec<String>,
    /// Key type for every key made: rsa-4096, rsa-2048 or ec-p256.
    #[arg(long, default_value = "rsa-4096")]
    pub key_type: String,
    /// The CA's subject CN (default "Puppet CA: <certname>").
    #[arg(long)]
    pub ca_name: Option<String>,
    /// The CA certificate's validity.
    #[arg(long, default_value = "15y")]
    pub ca_ttl: String,
    /// Root + intermediate CA, like `puppetserver ca setup` (the root key is kept in root_key.pem).
    #[arg(long)]
    pub intermediate: bool,
    /// Key type of the server's TLS certificate (default: --key-type); ec-p256 makes handshakes cheap.
    #[arg(long)]
    pub server_key_type: Option<String>,
    /// Write the CA key (and root key) encrypted with the passphrase (see --ca-key-passphrase-file).
    #[arg(long)]
    pub encrypt_key: bool,
}

/// `ca sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Certnames to sign.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Sign every pending request.
    #[arg(long)]
    pub all: bool,
    /// Permit subject alternative names beyond DNS:<certname>.
    #[arg(long)]
    pub allow_dns_alt_names: bool,
    /// Permit authorization extensions (1.3.6.1.4.1.34380.1.3.*).
    #[arg(long)]
    pub allow_authorization_extensions: bool,
    /// Validity instead of the configured one (5y, 90d, ...).
    #[arg(long)]
    pub ttl: Option<String>,
}
