//! The CA key in a PKCS#11 token (a hardware security module, or SoftHSM): found by the token's
//! and the key's labels, used through logged-in sessions (one per signing thread, kept in a pool); the
//! private key is created sensitive and not extractable, and never leaves the token.

use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as TokenKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rcgen::SignatureAlgorithm;
use zeroize::Zeroizing;

use super::keys::KeyType;
use super::{der, CaError};

/// Where the CA key is (`[ca.pkcs11]`).
#[derive(Clone)]
pub struct TokenConfig {
    /// The PKCS#11 module (a shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The key's label (its audit secret is `<label>.audit`).
    pub key_label: String,
    /// The user PIN.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"[elided]")
            .finish()
    }
}

/// `[ca.pkcs11]` as configured: where the key is, and where its PIN comes from (never the command
/// line): `pin-file`, else the environment variable `CA_PKCS11_PIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The CA key's label.
    pub key_label: String,
    /// A file holding the user PIN.
    pub pin_file: Option<PathBuf>,
}

/// The environment variable with the token's PIN when there is no `pin-file`.
pub const PIN_ENV: &str = "CA_PKCS11_PIN";

impl Pkcs11Settings {
    /// With the PIN read.
    pub fn config(&self) -> Result<TokenConfig, CaError> {
        let pin = match &self.pin_file {
            Some(f) => std::fs::read_to_string(f).map_err(|e| {
                CaError::failed(
                    format!("key error: cannot read the PKCS#11 PIN file {}", f.display()),
                    e,
                )
            })?,
            None => std::env::var(PIN_ENV).map_err(|_| {
                CaError::Key(format!(
                    "the PKCS#11 token needs its PIN: set pin-file in [ca.pkcs11], or {PIN_ENV}"
                ))
            })?,
        };
        let pin = Zeroizing::new(pin.trim_end_matches(['\r', '\n']).to_string());
        if pin.is_empty() {
            return Err(CaError::Key("the PKCS#11 PIN is empty".into()));
        }
        Ok(TokenConfig {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            key_label: self.key_label.clone(),
            pin,
        })
    }
}

/// The CA key in a token.
pub struct TokenKey {
    _context: Pkcs11,
    slot: Slot,
    key: ObjectHandle,
    audit: ObjectHandle,
    /// The public key as rcgen wants it: RSAPublicKey DER, or the EC point.
    public: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
    /// The key's label in the token.
    label: String,
    /// Idle sessions (the first one logged in: login holds for every session of this process).
    sessions: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

fn fail(what: &str) -> impl Fn(cryptoki::error::Error) -> CaError + '_ {
    move |e| CaError::failed(format!("key error: PKCS#11: {what}"), e)
}

/// The module loaded, the token found, a session logged in.
fn open_token(cfg: &TokenConfig) -> Result<(Pkcs11, Slot, Session), CaError> {
    let context = Pkcs11::new(&cfg.module).map_err(|e| {
        CaError::Key(format!(
            "PKCS#11: cannot load the module {}: {e}",
            cfg.module.display()
        ))
    })?;
    // The module may be initialized already by this process (the CA's key and the previous CA's key
    // during a rollover): one initialization, one login, shared by every session.
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail("initializing the module")(e)),
    }
    let slots = context.get_slots_with_token().map_err(fail("listing tokens"))?;
    let slot = slots
        .into_iter()
        .find(|s| {
            context
                .get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == cfg.token_label)
        })
        .ok_or_else(|| {
            CaError::Key(format!(
                "PKCS#11: no token labelled '{}' in {}",
                cfg.token_label,
                cfg.module.display()
            ))
        })?;
    let session = context.open_rw_session(slot).map_err(fail("opening a session"))?;
    let pin = AuthPin::new(cfg.pin.as_str().into());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _)) => {
            return Err(CaError::Key(format!(
                "PKCS#11: the PIN of token '{}' is wrong",
                cfg.token_label
            )))
        }
        Err(other) => {
            return Err(CaError::Key(format!(
                "PKCS#11: logging in to token '{}': {other}",
                cfg.token_label
            )))
        }
    }
    Ok((context, slot, session))
}

fn find(session: &Session, class: ObjectClass, label: &str) -> Result<Option<ObjectHandle>, CaError> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(fail("finding a key"))?;
    Ok(found.into_iter().next())
}

/// A DER INTEGER from unsigned big-endian bytes.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes
        .iter()
        .take_while(|b| **b == 0)
        .count()
        .min(bytes.len().saturating_sub(1));
    let mut v = bytes[skip..].to_vec();
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    der::encode_tlv(0x02, &v)
}

/// P-256's curve OID as CKA_EC_PARAMS holds it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

impl TokenKey {
    /// The CA key whose public key is `public` (as rcgen gives it): the key labelled as `cfg` says, or
    /// one labelled `<label>.<suffix>` (a key rollover's new key, see [`TokenKey::generate`]). A key
    /// is found by what it is, not by its label alone, so no label has to change when a rollover
    /// switches keys.
    pub fn open_matching(cfg: &TokenConfig, public: &[u8]) -> Result<TokenKey, CaError> {
        let (context, slot, session) = open_token(cfg)?;
        let audit = find_audit(&session, cfg)?;
        let prefix = format!("{}.", cfg.key_label);
        let mut candidates: Vec<(String, ObjectHandle)> = Vec::new();
        for key in session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(fail("finding a key"))?
        {
            let attrs = session
                .get_attributes(key, &[AttributeType::Label])
                .map_err(fail("reading a key's label"))?;
            for a in attrs {
                if let Attribute::Label(l) = a {
                    let l = String::from_utf8_lossy(&l).into_owned();
                    if l == cfg.key_label || l.starts_with(&prefix) {
                        candidates.push((l, key));
                    }
                }
            }
        }
        // The configured label first, then the newest rollover key (the suffix is a time).
        candidates.sort_by(|(a, _), (b, _)| (a != &cfg.key_label, b).cmp(&(b != &cfg.key_label, a)));
        for (label, key) in &candidates {
            if public_of(&session, *key, label).is_ok_and(|(found, _)| found == public) {
                return Self::assemble(context, slot, session, *key, audit, label);
            }
        }
        Err(CaError::Key(format!(
            "PKCS#11: no private key labelled '{0}' or '{0}.*' in token '{1}' matches the CA certificate",
            cfg.key_label, cfg.token_label
        )))
    }

    /// A new key of `kind` made in the token under `label` (sensitive, not extractable): a key
    /// rollover's next CA key. Refuses a label that is taken.
    pub fn generate(cfg: &TokenConfig, label: &str, kind: KeyType) -> Result<TokenKey, CaError> {
        let (context, slot, session) = open_token(cfg)?;
        if find(&session, ObjectClass::PRIVATE_KEY, label)?.is_some() {
            return Err(CaError::Key(format!(
                "PKCS#11: token '{}' already holds a key labelled '{label}'",
                cfg.token_label
            )));
        }
        let audit = find_audit(&session, cfg)?;
        let key = generate_pair(&session, label, kind)?;
        Self::assemble(context, slot, session, key, audit, label)
    }

    /// The token's label for this key.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The CA key `cfg` names: the one in the token, or (none there) a new one of `kind`, made in the
    /// token (sensitive, not extractable), with its audit secret. Returns it and whether it was made.
    pub fn open_or_generate(cfg: &TokenConfig, kind: KeyType) -> Result<(TokenKey, bool), CaError> {
        let (context, slot, session) = open_token(cfg)?;
        if let Some(key) = find(&session, ObjectClass::PRIVATE_KEY, &cfg.key_label)? {
            let audit_label = format!("{}.audit", cfg.key_label);
            let audit = match find(&session, ObjectClass::SECRET_KEY, &audit_label)? {
                Some(a) => a,
                None => generate_audit_secret(&session, &audit_label)?,
            };
            return Ok((
                Self::assemble(context, slot, session, key, audit, &cfg.key_label)?,
                false,
            ));
        }
        let key = generate_pair(&session, &cfg.key_label, kind)?;
        let audit = generate_audit_secret(&session, &format!("{}.audit", cfg.key_label))?;
        Ok((
            Self::assemble(context, slot, session, key, audit, &cfg.key_label)?,
            true,
        ))
    }

    /// Takes the CA key `pkcs8` (PKCS#8 DER; `public`: its public key as rcgen gives it) into the
    /// token under `cfg`'s label, sensitive and not extractable from then on, with a new audit
    /// secret. Refuses when the label is taken. (For `ca import`: the file is then not written.)
    pub fn import(cfg: &TokenConfig, pkcs8: &[u8], public: &[u8]) -> Result<TokenKey, CaError> {
        let (context, slot, session) = open_token(cfg)?;
        if find(&session, ObjectClass::PRIVATE_KEY, &cfg.key_label)?.is_some() {
            return Err(CaError::Key(format!(
                "PKCS#11: token '{}' already holds a key labelled '{}'",
                cfg.token_label, cfg.key_label
            )));
        }
        let info = pkcs8::PrivateKeyInfo::try_from(pkcs8)
            .map_err(|e| CaError::failed("key error: the CA key", e))?;
        let label = cfg.key_label.as_bytes().to_vec();
        let mut private = private_key_template(&label);
        private.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let mut public_template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(label),
        ];
        let bad = || CaError::Key("the CA key is not a key this CA can take into a token".into());
        let ints = |der_bytes: &[u8]| -> Option<Vec<Vec<u8>>> {
            let (tag, mut body, _) = der::read_tlv(der_bytes)?;
            if tag != 0x30 {
                return None;
            }
            let mut out = Vec::new();
            while !body.is_empty() {
                let (t, v, rest) = der::read_tlv(body)?;
                out.push((t, v.to_vec()));
                body = rest;
            }
            Some(out.into_iter().map(|(_, v)| v).collect())
        };
        match info.algorithm.oid.to_string().as_str() {
            "1.2.840.113549.1.1.1" => {
                // RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv.
                let v = ints(info.private_key).filter(|v| v.len() >= 9).ok_or_else(bad)?;
                let strip = |x: &[u8]| x.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
                private.extend([
                    Attribute::KeyType(TokenKeyType::RSA),
                    Attribute::Modulus(strip(&v[1])),
                    Attribute::PublicExponent(strip(&v[2])),
                    Attribute::PrivateExponent(strip(&v[3])),
                    Attribute::Prime1(strip(&v[4])),
                    Attribute::Prime2(strip(&v[5])),
                    Attribute::Exponent1(strip(&v[6])),
                    Attribute::Exponent2(strip(&v[7])),
                    Attribute::Coefficient(strip(&v[8])),
                ]);
                public_template.extend([
                    Attribute::KeyType(TokenKeyType::RSA),
                    Attribute::Modulus(strip(&v[1])),
                    Attribute::PublicExponent(strip(&v[2])),
                ]);
            }
            "1.2.840.10045.2.1" => {
                // ECPrivateKey: version, privateKey OCTET STRING, ...
                let v = ints(info.private_key).filter(|v| v.len() >= 2).ok_or_else(bad)?;
                private.extend([
                    Attribute::KeyType(TokenKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::Value(v[1].clone()),
                ]);
                public_template.extend([
                    Attribute::KeyType(TokenKeyType::EC),
                    Attribute::EcParams(P256_PARAMS.to_vec()),
                    Attribute::EcPoint(der::encode_tlv(0x04, public)),
                ]);
            }
            _ => return Err(bad()),
        }
        let key = session
            .create_object(&private)
            .map_err(fail("storing the CA key"))?;
        session
            .create_object(&public_template)
            .map_err(fail("storing the CA public key"))?;
        let audit = generate_audit_secret(&session, &format!("{}.audit", cfg.key_label))?;
        Self::assemble(context, slot, session, key, audit, &cfg.key_label)
    }

    fn assemble(
        context: Pkcs11,
        slot: Slot,
        session: Session,
        key: ObjectHandle,
        audit: ObjectHandle,
        label: &str,
    ) -> Result<TokenKey, CaError> {
        let (public, algorithm) = public_of(&session, key, label)?;
        Ok(TokenKey {
            _context: context,
            slot,
            key,
            audit,
            public,
            algorithm,
            label: label.to_string(),
            sessions: Mutex::new(vec![session]),
        })
    }

    /// The public key (RSAPublicKey DER, or the EC point).
    pub fn public_der(&self) -> &[u8] {
        &self.public
    }

    /// Its signature algorithm.
    pub fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }

    /// Runs `f` with an idle session (opened when none is idle: logged in already, as the first one).
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, CaError>) -> Result<T, CaError> {
        let idle = self.sessions.lock().ok().and_then(|mut s| s.pop());
        let session = match idle {
            Some(s) => s,
            None => self
                ._context
                .open_rw_session(self.slot)
                .map_err(fail("opening a session"))?,
        };
        let out = f(&session);
        if let Ok(mut s) = self.sessions.lock() {
            s.push(session);
        }
        out
    }

    /// Signs `msg` with the CA key in the token: RSA PKCS#1 v1.5 with SHA-256, or ECDSA with SHA-256
    /// (returned DER-encoded, as X.509 wants it).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CaError> {
        let rsa = self.algorithm == &rcgen::PKCS_RSA_SHA256;
        if rsa {
            return self.with_session(|s| {
                s.sign(&Mechanism::Sha256RsaPkcs, self.key, msg)
                    .map_err(fail("signing"))
            });
        }
        // ECDSA over the SHA-256 digest, hashed here (CKM_ECDSA is what every token has).
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, msg);
        let sig = self.with_session(|s| {
            s.sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
                .map_err(fail("signing"))
        })?;
        // r || s, each 32 bytes, to SEQUENCE { INTEGER r, INTEGER s }.
        if sig.len() != 64 {
            return Err(CaError::Key(
                "PKCS#11: an ECDSA signature of an unexpected size".into(),
            ));
        }
        let mut body = der_uint(&sig[..32]);
        body.extend(der_uint(&sig[32..]));
        Ok(der::encode_tlv(0x30, &body))
    }

    /// 32 secret bytes for `label` (the audit log's sealing key, its wrapping key): HMAC-SHA256 over
    /// the label with the token's audit secret (only whoever can use the token can make them).
    pub fn derive(&self, label: &[u8]) -> Result<Zeroizing<[u8; 32]>, CaError> {
        let tag = self.with_session(|s| {
            s.sign(&Mechanism::Sha256Hmac, self.audit, label)
                .map_err(fail("deriving the audit key"))
        })?;
        let mut out = Zeroizing::new([0u8; 32]);
        if tag.len() != 32 {
            return Err(CaError::Key("PKCS#11: an HMAC of an unexpected size".into()));
        }
        out.copy_from_slice(&tag);
        Ok(out)
    }

    /// Whether the token says the CA key is sensitive and was never extractable.
    pub fn never_extractable(&self) -> Result<bool, CaError> {
        let attrs = self.with_session(|s| {
            s.get_attributes(
                self.key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                    AttributeType::Extractable,
                ],
            )
            .map_err(fail("reading the CA key's attributes"))
        })?;
        // Each of the three asked for comes back once: all three as they should be.
        let as_wanted = attrs
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Attribute::Sensitive(true)
                        | Attribute::NeverExtractable(true)
                        | Attribute::Extractable(false)
                )
            })
            .count();
        Ok(as_wanted == 3)
    }
}

/// A private key's public half (as rcgen wants it: RSAPublicKey DER, or the EC point) and its
/// signature algorithm, from the public key object of the same label.
fn public_of(
    session: &Session,
    key: ObjectHandle,
    label: &str,
) -> Result<(Vec<u8>, &'static SignatureAlgorithm), CaError> {
    let attrs = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(fail("reading the CA key"))?;
    let kind = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    });
    let public_key = find(session, ObjectClass::PUBLIC_KEY, label)?.ok_or_else(|| {
        CaError::Key(format!(
            "PKCS#11: no public key labelled '{label}' beside the CA key"
        ))
    })?;
    Ok(match kind {
        Some(k) if k == TokenKeyType::RSA => {
            let [n, e] = bytes_attributes(
                session,
                public_key,
                [AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            let mut body = der_uint(&n);
            body.extend(der_uint(&e));
            (der::encode_tlv(0x30, &body), &rcgen::PKCS_RSA_SHA256)
        }
        Some(k) if k == TokenKeyType::EC => {
            let [point, params] = bytes_attributes(
                session,
                public_key,
                [AttributeType::EcPoint, AttributeType::EcParams],
            )?;
            if params != P256_PARAMS {
                return Err(CaError::Key("PKCS#11: the CA key's curve is not P-256".into()));
            }
            // CKA_EC_POINT is the point wrapped in an OCTET STRING.
            let raw = match der::read_tlv(&point) {
                Some((0x04, inner, [])) => inner.to_vec(),
                _ => point,
            };
            (raw, &rcgen::PKCS_ECDSA_P256_SHA256)
        }
        _ => return Err(CaError::Key("PKCS#11: the CA key is neither RSA nor EC".into())),
    })
}

/// The audit secret `<key-label>.audit`, which must be in the token.
fn find_audit(session: &Session, cfg: &TokenConfig) -> Result<ObjectHandle, CaError> {
    find(
        session,
        ObjectClass::SECRET_KEY,
        &format!("{}.audit", cfg.key_label),
    )?
    .ok_or_else(|| {
        CaError::Key(format!(
            "PKCS#11: no audit secret labelled '{}.audit' in token '{}' (made with the CA key by `ca setup`)",
            cfg.key_label, cfg.token_label
        ))
    })
}

/// A key pair of `kind` made in the token under `label`: the private key sensitive and never
/// extractable. Returns the private key.
fn generate_pair(session: &Session, label: &str, kind: KeyType) -> Result<ObjectHandle, CaError> {
    let label = label.as_bytes().to_vec();
    let common_private = private_key_template(&label);
    let common_public = vec![
        Attribute::Token(true),
        Attribute::Verify(true),
        Attribute::Label(label),
    ];
    let (mechanism, mut public_template) = match kind {
        KeyType::Rsa4096 | KeyType::Rsa2048 => {
            let bits: u64 = if kind == KeyType::Rsa4096 { 4096 } else { 2048 };
            (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(cryptoki::types::Ulong::new(bits)),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                ],
            )
        }
        KeyType::EcP256 => (
            Mechanism::EccKeyPairGen,
            vec![Attribute::EcParams(P256_PARAMS.to_vec())],
        ),
    };
    public_template.extend(common_public);
    let (_, key) = session
        .generate_key_pair(&mechanism, &public_template, &common_private)
        .map_err(fail("generating the CA key"))?;
    Ok(key)
}

/// A generic secret in the token for the audit seal: sensitive, not extractable, for HMAC only.
fn generate_audit_secret(session: &Session, label: &str) -> Result<ObjectHandle, CaError> {
    session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::ValueLen(cryptoki::types::Ulong::new(32)),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .map_err(fail("generating the audit secret"))
}

/// Two byte-string attributes of a public key object, in the order asked (empty when absent).
fn bytes_attributes(
    session: &Session,
    object: ObjectHandle,
    types: [AttributeType; 2],
) -> Result<[Vec<u8>; 2], CaError> {
    let attrs = session
        .get_attributes(object, &types)
        .map_err(fail("reading the CA public key"))?;
    let mut out = [Vec::new(), Vec::new()];
    for attr in attrs {
        let (t, v) = match attr {
            Attribute::Modulus(v) => (AttributeType::Modulus, v),
            Attribute::PublicExponent(v) => (AttributeType::PublicExponent, v),
            Attribute::EcPoint(v) => (AttributeType::EcPoint, v),
            Attribute::EcParams(v) => (AttributeType::EcParams, v),
            _ => continue,
        };
        if let Some(i) = types.iter().position(|x| *x == t) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// What every CA key in a token is: a token object, private, sensitive, never extractable, for signing.
fn private_key_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.to_vec()),
    ]
}
