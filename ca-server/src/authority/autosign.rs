//! The autosign decision (§4.1): `true`/`false`, an allow-list file re-read when it changes, or an
//! executable (certname as argument, the PEM CSR on stdin, exit 0 = sign) killed after a timeout.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;

use super::{Authority, Autosign};
use crate::policy::autosign::AllowList;

/// What autosign decided, and why (for the log, the audit and `ca check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutosignVerdict {
    /// Sign it?
    pub sign: bool,
    /// Why.
    pub reason: String,
}

/// The last allow-list read, keyed by the file's modification time and size.
#[derive(Debug, Default)]
pub(super) struct AllowListCache(Mutex<Option<(PathBuf, SystemTime, u64, AllowList)>>);

impl AllowListCache {
    fn get(&self, path: &Path) -> std::io::Result<AllowList> {
        let meta = std::fs::metadata(path)?;
        let stamp = (meta.modified()?, meta.len());
        if let Ok(guard) = self.0.lock() {
            if let Some((p, m, l, list)) = guard.as_ref() {
                if p == path && (*m, *l) == stamp {
                    return Ok(list.clone());
                }
            }
        }
        let list = AllowList::parse(&std::fs::read_to_string(path)?);
        for (line, text) in &list.invalid {
            tracing::warn!(file = %path.display(), line, text = %text, "invalid autosign.conf line ignored");
        }
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some((path.to_path_buf(), stamp.0, stamp.1, list.clone()));
        }
        Ok(list)
    }
}

fn no(reason: impl Into<String>) -> AutosignVerdict {
    AutosignVerdict {
        sign: false,
        reason: reason.into(),
    }
}

fn yes(reason: impl Into<String>) -> AutosignVerdict {
    AutosignVerdict {
        sign: true,
        reason: reason.into(),
    }
}

/// Whether `path` is an executable policy rather than an allow-list.
pub(super) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Authority {
    /// Decides autosign for a stored request. `run_executable = false` describes an executable policy
    /// instead of running it (for `ca check`, which changes nothing).
    pub async fn autosign_verdict(
        &self,
        certname: &str,
        csr_pem: &[u8],
        run_executable: bool,
    ) -> AutosignVerdict {
        let path = match &self.settings().autosign {
            Autosign::Off => return no("autosign is off"),
            Autosign::All => return yes("autosign = true"),
            Autosign::Path(p) => p.clone(),
        };
        if !path.exists() {
            return no(format!("autosign file {} does not exist", path.display()));
        }
        if is_executable(&path) {
            if !run_executable {
                return no(format!(
                    "would run the autosign executable {} (not run by check)",
                    path.display()
                ));
            }
            return self.run_policy(&path, certname, csr_pem).await;
        }
        match self.autosign_cache.get(&path) {
            Ok(list) => match list.matching(certname) {
                Some(entry) => yes(format!("autosign.conf {} entry '{entry}'", path.display())),
                None => no(format!("no entry in {} matches", path.display())),
            },
            Err(e) => {
                tracing::error!(file = %path.display(), error = %crate::error::Chain(&e), "cannot read the autosign file");
                no(format!("cannot read {}", path.display()))
            }
        }
    }

    async fn run_policy(&self, path: &Path, certname: &str, csr_pem: &[u8]) -> AutosignVerdict {
        // At most `autosign_max_concurrent` executables at once: a burst of submissions queues here
        // instead of starting one process each. The wait does not count against the timeout.
        let Ok(_slot) = self.autosign_slots.acquire().await else {
            return no("autosign is shutting down");
        };
        // The policy never sees the CA key's passphrase.
        let child = tokio::process::Command::new(path)
            .arg(certname)
            .env_remove(crate::ca::passphrase::PASSPHRASE_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(policy = %path.display(), error = %crate::error::Chain(&e), "cannot start the autosign executable");
                return no(format!("cannot run {}", path.display()));
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A policy that does not read its stdin must not block us; errors here are its business.
            let _ = stdin.write_all(csr_pem).await;
            drop(stdin);
        }
        let timeout = self.settings().autosign_timeout;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Err(_) => {
                // Dropping the future drops the child: kill_on_drop ends it.
                tracing::warn!(policy = %path.display(), %certname, ?timeout, "autosign executable timed out; request stays pending");
                no(format!(
                    "autosign executable {} timed out after {timeout:?}",
                    path.display()
                ))
            }
            Ok(Err(e)) => no(format!("autosign executable failed: {}", crate::error::Chain(&e))),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !stderr.trim().is_empty() {
                    tracing::warn!(policy = %path.display(), %certname, stderr = %stderr.trim(), "autosign executable stderr");
                }
                tracing::debug!(policy = %path.display(), stdout = %String::from_utf8_lossy(&out.stdout).trim(), "autosign stdout");
                match out.status.code() {
                    Some(0) => yes(format!("autosign executable {} exited 0", path.display())),
                    Some(c) => no(format!("autosign executable {} exited {c}", path.display())),
                    None => no(format!("autosign executable {} was killed", path.display())),
                }
            }
        }
    }
}
