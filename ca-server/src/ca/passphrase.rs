//! The CA key's passphrase and where it comes from. [`Passphrase`] never prints its bytes (`Debug` shows
//! `[redacted]`, there is no `Display`) and zeroes them when dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::CaError;

/// Environment variable naming a file that holds the CA key's passphrase.
pub const PASSPHRASE_FILE_ENV: &str = "CA_KEY_PASSPHRASE_FILE";
/// Environment variable holding the CA key's passphrase itself.
pub const PASSPHRASE_ENV: &str = "CA_KEY_PASSPHRASE";

/// The ways to give the passphrase, in the order they are looked at (for error messages).
pub const HOW_TO_GIVE: &str = "give --ca-key-passphrase-file FILE, `key-passphrase-file` in the [ca] \
     section of the configuration, or the environment variable CA_KEY_PASSPHRASE_FILE (a file) or \
     CA_KEY_PASSPHRASE";

/// A passphrase. Its bytes leave only through [`Passphrase::expose`].
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps the bytes as they are.
    pub fn new(bytes: Vec<u8>) -> Self {
        Passphrase(Zeroizing::new(bytes))
    }

    /// The passphrase of a file's contents: one trailing newline (`\n` or `\r\n`) is not part of it.
    pub fn from_file_contents(mut bytes: Vec<u8>) -> Self {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Passphrase::new(bytes)
    }

    /// The bytes, for the key derivation.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the CA key's passphrase comes from. A file is read only when an encrypted key is opened or
/// written, so commands that do not touch the key do not need it.
#[derive(Debug, Clone, Default)]
pub enum PassphraseSource {
    /// None given.
    #[default]
    None,
    /// A file holding it (`--ca-key-passphrase-file`, `[ca] key-passphrase-file`,
    /// `$CA_KEY_PASSPHRASE_FILE`).
    File(PathBuf),
    /// Given directly (`$CA_KEY_PASSPHRASE`).
    Value(Passphrase),
}

impl PassphraseSource {
    /// The first source given: the flag, the configuration file, `$CA_KEY_PASSPHRASE_FILE`,
    /// `$CA_KEY_PASSPHRASE`. Empty values count as not given.
    pub fn resolve(flag: Option<PathBuf>, config: Option<PathBuf>) -> PassphraseSource {
        Self::resolve_with(flag, config, |name| std::env::var_os(name))
    }

    /// [`PassphraseSource::resolve`] with the environment given by `env`.
    pub fn resolve_with(
        flag: Option<PathBuf>,
        config: Option<PathBuf>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> PassphraseSource {
        let file = flag
            .filter(|p| !p.as_os_str().is_empty())
            .or(config.filter(|p| !p.as_os_str().is_empty()))
            .or_else(|| {
                env(PASSPHRASE_FILE_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            });
        if let Some(path) = file {
            return PassphraseSource::File(path);
        }
        match env(PASSPHRASE_ENV).filter(|v| !v.is_empty()) {
            Some(v) => {
                use std::os::unix::ffi::OsStringExt;
                PassphraseSource::Value(Passphrase::new(v.into_vec()))
            }
            None => PassphraseSource::None,
        }
    }

    /// Whether a source was given.
    pub fn is_given(&self) -> bool {
        !matches!(self, PassphraseSource::None)
    }

    /// The passphrase, reading the file when it is one; `None` when no source was given.
    pub fn read(&self) -> Result<Option<Passphrase>, CaError> {
        match self {
            PassphraseSource::None => Ok(None),
            PassphraseSource::Value(p) => Ok(Some(p.clone())),
            PassphraseSource::File(path) => read_file(path).map(Some),
        }
    }

    /// The passphrase, or an error naming the ways to give one; `what` says what needs it.
    pub fn require(&self, what: &str) -> Result<Passphrase, CaError> {
        self.read()?
            .ok_or_else(|| CaError::Key(format!("{what} needs a passphrase: {HOW_TO_GIVE}")))
    }
}

fn read_file(path: &Path) -> Result<Passphrase, CaError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CaError::Key(format!(
            "cannot read the CA key passphrase file {}: {e}",
            path.display()
        ))
    })?;
    let pass = Passphrase::from_file_contents(bytes);
    if pass.expose().is_empty() {
        return Err(CaError::Key(format!(
            "the CA key passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_passphrase() {
        let p = Passphrase::new(b"hunter2".to_vec());
        assert_eq!(format!("{p:?}"), "[redacted]");
        let s = PassphraseSource::Value(p);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        assert_eq!(Passphrase::from_file_contents(b"abc\n".to_vec()).expose(), b"abc");
        assert_eq!(
            Passphrase::from_file_contents(b"abc\r\n".to_vec()).expose(),
            b"abc"
        );
        assert_eq!(
            Passphrase::from_file_contents(b"abc\n\n".to_vec()).expose(),
            b"abc\n"
        );
        assert_eq!(
            Passphrase::from_file_contents(b" abc ".to_vec()).expose(),
            b" abc "
        );
    }

    #[test]
    fn sources_are_taken_in_order() {
        use std::ffi::OsString;
        let env = |file: Option<&str>, value: Option<&str>| {
            let (file, value) = (file.map(OsString::from), value.map(OsString::from));
            move |name: &str| match name {
                PASSPHRASE_FILE_ENV => file.clone(),
                PASSPHRASE_ENV => value.clone(),
                _ => None,
            }
        };
        let path = |p: &str| Some(PathBuf::from(p));
        let file_of = |s: PassphraseSource| match s {
            PassphraseSource::File(p) => p.display().to_string(),
            other => format!("{other:?}"),
        };
        let all = env(Some("/env"), Some("v"));
        assert_eq!(
            file_of(PassphraseSource::resolve_with(path("/flag"), path("/conf"), &all)),
            "/flag"
        );
        assert_eq!(
            file_of(PassphraseSource::resolve_with(None, path("/conf"), &all)),
            "/conf"
        );
        assert_eq!(file_of(PassphraseSource::resolve_with(None, None, &all)), "/env");
        match PassphraseSource::resolve_with(None, None, env(Some(""), Some("v"))) {
            PassphraseSource::Value(p) => assert_eq!(p.expose(), b"v"),
            other => panic!("{other:?}"),
        }
        let none = PassphraseSource::resolve_with(None, None, env(None, Some("")));
        assert!(!none.is_given());
        assert!(none.read().unwrap().is_none());
        let e = none.require("the CA key").unwrap_err().to_string();
        assert!(
            e.contains("CA_KEY_PASSPHRASE_FILE") && e.contains("--ca-key-passphrase-file"),
            "{e}"
        );
    }

    #[test]
    fn files_are_read_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        let src = PassphraseSource::File(f.clone());
        assert!(src.read().unwrap_err().to_string().contains("cannot read"));
        std::fs::write(&f, "\n").unwrap();
        assert!(src.read().unwrap_err().to_string().contains("is empty"));
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(src.read().unwrap().unwrap().expose(), b"s3cret");
    }
}
