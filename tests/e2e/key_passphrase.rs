//! A passphrase-encrypted CA key: `ca setup --encrypt-key`, the server and the CLI refusing to open it
//! without the passphrase or with a wrong one, signing with it given in the environment, `ca key`
//! rotation, and an encrypted Puppet 3 key kept encrypted by `ca import`. The passphrase never shows in
//! any output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    assert_verifies, ca, ca_binary, openssl, server_binary, spawn_until_listening, Run, API_LISTENING,
};
use crate::migration::make_puppet3_cadir;

const PASS: &str = "e2e-Pa55phrase-k7Qz";
const WRONG: &str = "Wr0ng-Guess-x3Lm";
const NEW_PASS: &str = "rotated-Pa55-z8Yw";
const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// Everything the environment could give the binaries, removed: each test says what it gives.
const ENV: [&str; 4] = [
    "CA_KEY_PASSPHRASE",
    "CA_KEY_PASSPHRASE_FILE",
    "CA_CONFIG",
    "CA_DATA_DIR",
];

/// A 0600 file holding `text` and a newline, as an operator writes it.
fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

/// `key` is an encrypted PKCS#8 key, mode 0600, that openssl opens with the passphrase in `pass_file`.
fn assert_encrypted_key(key: &Path, pass_file: &str) {
    assert!(std::fs::read_to_string(key).unwrap().starts_with(ENCRYPTED_BEGIN));
    assert_eq!(mode(key), 0o600);
    let passin = format!("file:{pass_file}");
    let (ok, out) = openssl(&["pkey", "-in", key.to_str().unwrap(), "-passin", &passin, "-noout"]);
    assert!(ok, "{out}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in [PASS, WRONG, NEW_PASS] {
        assert!(!text.contains(secret), "{what} shows a passphrase: {text}");
    }
    assert!(
        !text.contains("PRIVATE KEY-----"),
        "{what} shows key material: {text}"
    );
}

#[track_caller]
fn assert_run_clean(run: &Run) {
    assert_no_secret("ca stdout", &run.stdout);
    assert_no_secret("ca stderr", &run.stderr);
}

fn server(data: &Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(server_binary());
    cmd.args([
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    for v in ENV {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a server that must refuse to start; its output.
fn refused_start(data: &Path, env: &[(&str, &str)]) -> Output {
    let mut child = server(data, 0, env).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ca-server started without the right passphrase");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_no_secret("server stdout", &String::from_utf8_lossy(&out.stdout));
    assert_no_secret("server stderr", &String::from_utf8_lossy(&out.stderr));
    out
}

/// The real `ca` binary with `env`, for what only the environment can give.
fn ca_bin(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(ca_binary());
    for v in ENV {
        cmd.env_remove(v);
    }
    let out = cmd
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn make_csr(dir: &Path, cn: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let path = dir.join(format!("{cn}.csr"));
    std::fs::write(&path, p.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
    path.display().to_string()
}

/// The certificate PEM at the end of `ca print` output, written to a file.
fn cert_from_print(dir: &Path, name: &str, printed: &str) -> PathBuf {
    let at = printed
        .find("-----BEGIN CERTIFICATE-----")
        .expect("PEM in print output");
    let path = dir.join(format!("{name}.crt.pem"));
    std::fs::write(&path, &printed[at..]).unwrap();
    path
}

#[test]
fn encrypted_ca_key_from_setup_to_signing() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = secret_file(tmp.path(), "pass", PASS);
    let wrong = secret_file(tmp.path(), "wrong", WRONG);
    let data = tmp.path().join("ca");
    let d = data.to_str().unwrap();
    let key = data.join("ca_key.pem");

    // --encrypt-key without a passphrase: refused before anything is written.
    let run = ca(&[
        "--data-dir",
        d,
        "setup",
        "--certname",
        "ca.example.test",
        "--encrypt-key",
    ])
    .fails_with(1, "needs a passphrase");
    assert!(
        run.stderr.contains("--ca-key-passphrase-file") && run.stderr.contains("CA_KEY_PASSPHRASE"),
        "{run:#?}"
    );
    assert!(!data.exists());

    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "setup",
        "--certname",
        "ca.example.test",
        "--key-type",
        "ec-p256",
        "--dns-alt-names",
        "localhost,IP:127.0.0.1",
        "--encrypt-key",
    ])
    .ok();
    assert!(run.stdout.contains("mode 0600, encrypted"), "{run:#?}");
    assert_run_clean(&run);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with(ENCRYPTED_BEGIN), "{text}");
    assert_eq!(mode(&key), 0o600);
    let k = key.to_str().unwrap();
    let (ok, out) = openssl(&["pkey", "-in", k, "-passin", &format!("file:{pass}"), "-noout"]);
    assert!(ok, "openssl cannot decrypt with the passphrase: {out}");
    let (ok, _) = openssl(&["pkey", "-in", k, "-passin", &format!("file:{wrong}"), "-noout"]);
    assert!(!ok, "openssl decrypted with a wrong passphrase");

    // The CLI: no passphrase, a wrong one.
    let run =
        ca(&["--data-dir", d, "list"]).fails_with(1, "the CA key is encrypted and no passphrase was given");
    assert!(run.stderr.contains("CA_KEY_PASSPHRASE_FILE"), "{run:#?}");
    let run = ca(&["--data-dir", d, "--ca-key-passphrase-file", &wrong, "list"])
        .fails_with(1, "cannot decrypt the CA key: wrong passphrase?");
    assert_run_clean(&run);

    // The server: no passphrase, a wrong one.
    let out = refused_start(&data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the CA key is encrypted and no passphrase was given")
            && stderr.contains("--ca-key-passphrase-file")
            && stderr.contains("CA_KEY_PASSPHRASE"),
        "{stderr}"
    );
    let out = refused_start(&data, &[("CA_KEY_PASSPHRASE", WRONG)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot decrypt the CA key: wrong passphrase?"),
        "{stderr}"
    );
    let out = refused_start(&data, &[("CA_KEY_PASSPHRASE_FILE", wrong.as_str())]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase?"));

    // The passphrase in the environment: it starts and signs over the API.
    let (mut child, port) = spawn_until_listening(
        &mut server(&data, 0, &[("CA_KEY_PASSPHRASE", PASS)]),
        &tmp.path().join("server.log"),
        API_LISTENING,
        Duration::from_secs(60),
    );
    let url = format!("https://localhost:{port}");
    let remote = |args: &[&str]| {
        let mut argv = vec!["--data-dir", d, "--server", url.as_str()];
        argv.extend_from_slice(args);
        let run = ca(&argv).ok();
        assert_run_clean(&run);
        run
    };
    remote(&["submit", &make_csr(tmp.path(), "node1.example.test")]);
    let signed = remote(&["sign", "node1.example.test"]).stdout;
    assert!(signed.contains("node1.example.test"), "{signed}");
    let printed = remote(&["print", "node1.example.test"]).stdout;
    let cert = cert_from_print(tmp.path(), "node1.example.test", &printed);
    assert_verifies(&data.join("ca_crt.pem"), &cert);

    // The CLI with the passphrase in the environment signs locally, next to the running server.
    let csr2 = make_csr(tmp.path(), "node2.example.test");
    let env = [("CA_KEY_PASSPHRASE", PASS)];
    let run = ca_bin(&data, &["submit", &csr2], &env);
    assert_eq!(run.code, 0, "{run:#?}");
    let run = ca_bin(&data, &["sign", "node2.example.test"], &env);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_run_clean(&run);
    let run = ca_bin(&data, &["print", "node2.example.test"], &env);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_verifies(
        &data.join("ca_crt.pem"),
        &cert_from_print(tmp.path(), "node2.example.test", &run.stdout),
    );
    let run = ca_bin(&data, &["list", "--all"], &[]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("no passphrase was given"), "{run:#?}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let log = std::fs::read_to_string(tmp.path().join("server.log")).unwrap();
    assert!(exit.success(), "{exit:?}: {log}");
    assert!(log.contains(API_LISTENING), "{log}");
    assert_no_secret("server log", &log);
}

#[test]
fn key_encrypt_rotate_and_decrypt_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = secret_file(tmp.path(), "pass", PASS);
    let new_pass = secret_file(tmp.path(), "new", NEW_PASS);
    let data = tmp.path().join("ca");
    let d = data.to_str().unwrap();
    ca(&[
        "--data-dir",
        d,
        "setup",
        "--certname",
        "ca.example.test",
        "--key-type",
        "ec-p256",
        "--intermediate",
    ])
    .ok();
    let keys = [data.join("ca_key.pem"), data.join("root_key.pem")];
    let public = |p: &Path, passin: &str| {
        let (ok, out) = openssl(&["pkey", "-in", p.to_str().unwrap(), "-passin", passin, "-pubout"]);
        assert!(ok, "{out}");
        out
    };
    let before: Vec<String> = keys.iter().map(|k| public(k, "pass:unused")).collect();

    // Encrypt: needs a passphrase.
    ca(&["--data-dir", d, "key", "encrypt"]).fails_with(1, "needs a passphrase");
    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "key",
        "encrypt",
    ])
    .ok();
    assert!(
        run.stdout.contains("ca_key.pem: encrypted") && run.stdout.contains("root_key.pem: encrypted"),
        "{run:#?}"
    );
    assert_run_clean(&run);
    for (k, pem) in keys.iter().zip(&before) {
        assert!(std::fs::read_to_string(k).unwrap().starts_with(ENCRYPTED_BEGIN));
        assert_eq!(mode(k), 0o600);
        assert_eq!(&public(k, &format!("file:{pass}")), pem, "same key");
    }
    ca(&["--data-dir", d, "list"]).fails_with(1, "no passphrase was given");
    ca(&["--data-dir", d, "--ca-key-passphrase-file", &pass, "list"]).ok();

    // Rotate: the current passphrase opens, the new one encrypts.
    ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &new_pass,
        "key",
        "encrypt",
    ])
    .fails_with(1, "wrong passphrase?");
    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "key",
        "encrypt",
        "--new-passphrase-file",
        &new_pass,
    ])
    .ok();
    assert!(run.stdout.contains("re-encrypted"), "{run:#?}");
    ca(&["--data-dir", d, "--ca-key-passphrase-file", &pass, "list"]).fails_with(1, "wrong passphrase?");
    ca(&["--data-dir", d, "--ca-key-passphrase-file", &new_pass, "list"]).ok();
    for (k, pem) in keys.iter().zip(&before) {
        assert_eq!(&public(k, &format!("file:{new_pass}")), pem, "same key");
        assert_eq!(mode(k), 0o600);
    }

    // Decrypt.
    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &new_pass,
        "key",
        "decrypt",
    ])
    .ok();
    assert!(run.stdout.contains("decrypted"), "{run:#?}");
    for (k, pem) in keys.iter().zip(&before) {
        assert!(std::fs::read_to_string(k)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(mode(k), 0o600);
        assert_eq!(&public(k, "pass:unused"), pem, "same key");
    }
    ca(&["--data-dir", d, "list"]).ok();
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ca(&[
        "--data-dir",
        d,
        "--server",
        "https://localhost:1",
        "key",
        "decrypt",
    ])
    .fails_with(1, "data directory only");
}

#[test]
fn import_keeps_an_encrypted_puppet3_key_encrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = secret_file(tmp.path(), "pass", PASS);
    let ca_dir = tmp.path().join("ssl/ca");
    make_puppet3_cadir(&ca_dir);
    let cadir = ca_dir.to_str().unwrap();

    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "import",
        "--cadir",
        cadir,
    ])
    .ok();
    assert!(
        run.stdout
            .contains("decrypted with private/ca.pass, stored encrypted with the passphrase"),
        "{run:#?}"
    );
    assert_run_clean(&run);
    assert_encrypted_key(&data.join("ca_key.pem"), &pass);
    ca(&["--data-dir", d, "sign", "node2.example.test"]).fails_with(1, "no passphrase was given");
    let run = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "sign",
        "node2.example.test",
    ])
    .ok();
    assert!(run.stdout.contains("(serial 3)"), "{run:#?}");
    let printed = ca(&[
        "--data-dir",
        d,
        "--ca-key-passphrase-file",
        &pass,
        "print",
        "node2.example.test",
    ])
    .ok()
    .stdout;
    assert_verifies(
        &data.join("ca_crt.pem"),
        &cert_from_print(tmp.path(), "node2.example.test", &printed),
    );

    // Without a passphrase: stored decrypted, as before, with a warning saying how to encrypt it.
    let plain = tmp.path().join("plain");
    let run = ca(&["--data-dir", plain.to_str().unwrap(), "import", "--cadir", cadir]).ok();
    assert!(run.stderr.contains("ca key encrypt"), "{run:#?}");
    assert!(!std::fs::read_to_string(plain.join("ca_key.pem"))
        .unwrap()
        .contains("ENCRYPTED"));

    // --encrypt-key without a passphrase is refused, with nothing written.
    let refused = tmp.path().join("refused");
    ca(&[
        "--data-dir",
        refused.to_str().unwrap(),
        "import",
        "--cadir",
        cadir,
        "--encrypt-key",
    ])
    .fails_with(1, "needs a passphrase");
    assert!(!refused.exists());
}

#[test]
fn server_on_an_empty_data_dir_encrypts_the_new_key_with_the_configured_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = secret_file(tmp.path(), "pass", PASS);
    let config = tmp.path().join("ca.toml");
    std::fs::write(
        &config,
        format!("key-type = \"ec-p256\"\ncertname = \"ca.example.test\"\n[ca]\nkey-passphrase-file = \"{pass}\"\n"),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    let (mut child, _) = spawn_until_listening(
        server(&data, 0, &[]).arg("--config").arg(&config),
        &log_path,
        API_LISTENING,
        Duration::from_secs(60),
    );
    assert_encrypted_key(&data.join("ca_key.pem"), &pass);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status:?}: {log}");
    assert!(
        log.contains("creating one") && log.contains("encrypted_key"),
        "{log}"
    );
    assert_no_secret("server log", &log);
}
