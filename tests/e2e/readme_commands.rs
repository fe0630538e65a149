//! The README's `ca` command lines, taken from the README itself (not copied here) and run one by one
//! with the real `ca` binary against temporary CAs: the command block of "The `ca` CLI", the block of
//! "The CA key" with its `/dev/stdin` line, and the Quickstart's admin lines.
//!
//! Each line runs as written, but for `--data-dir` (added to every line, as `TestCa::ca` does) and the
//! words in [`SUBSTITUTIONS`], each with its reason; what must exist first (a CSR file, a pending
//! request) is made by the line's `before` steps. A line in one of these blocks that has neither a plan
//! nor an entry in the block's exceptions fails the test, and so does a plan or an exception for a line
//! the block no longer has: the README cannot gain an untested `ca` line, nor keep a stale one here.
//!
//! The README's other commands are run elsewhere (`cargo run`: `server_binary`; the agent's `puppet ssl
//! bootstrap`: `real_clients`) or are illustrative (marked so where they stand).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::harness::{ca_binary, Run};

/// A README word the test cannot use as written, what it uses instead, and why. Whole words only.
const SUBSTITUTIONS: &[(&str, With, &str)] = &[
    (
        "/etc/puppetlabs/puppetserver/ca",
        With::File("puppetserver-ca"),
        "a puppetserver cadir on a puppetserver host: here the main CA exported in puppetserver's \
         layout by a `before` step",
    ),
    (
        "/tmp/cadir",
        With::File("cadir"),
        "an absent directory, in the test's directory rather than the shared /tmp",
    ),
    (
        "...",
        With::Words(&["--certname", "ca.example.com"]),
        "the README leaves the rest of setup's arguments to the reader",
    ),
    (
        "/etc/ca/key-passphrase",
        With::File("passphrase"),
        "the passphrase file, mode 0600, in the test's directory",
    ),
    (
        "F",
        With::File("new-passphrase"),
        "placeholder for the file holding the new passphrase",
    ),
    (
        "NEW",
        With::File("new-passphrase"),
        "placeholder for the file holding the new passphrase",
    ),
];

/// The passphrases of [`SUBSTITUTIONS`]' files.
const PASSPHRASE: &str = "readme-Pa55phrase-q4Vn";
const NEW_PASSPHRASE: &str = "readme-r0tated-x7Kc";

/// The Quickstart runs `sudo ./target/release/ca ...`: `sudo` is dropped (the test owns its temporary
/// CA) and the release binary is the test build's `ca` (the same program, see `harness::ca_binary`).
const QUICKSTART_PREFIX: &[&str] = &["sudo", "./target/release/ca"];

#[derive(Clone, Copy)]
enum With {
    /// A path in the test's directory.
    File(&'static str),
    /// These words.
    Words(&'static [&'static str]),
}

/// What must hold before a line runs (done with the same binary on the line's data directory).
#[derive(Clone, Copy, Debug)]
enum Before {
    /// `ca setup --certname ca.example.com --key-type ec-p256`: a CA to work on (the Quickstart's is
    /// made by the server's first start).
    Setup,
    /// A PEM CSR for `cn` with these DNS alt names, written to `file` in the working directory: the
    /// file the line reads.
    CsrFile {
        file: &'static str,
        cn: &'static str,
        alt: &'static [&'static str],
    },
    /// A pending request for `cn` with these DNS alt names (what an agent's `puppet ssl bootstrap`
    /// sends), submitted with `ca submit`.
    Pending {
        cn: &'static str,
        alt: &'static [&'static str],
    },
    /// `ca sign NAME`.
    Sign(&'static str),
    /// `ca clean NAME`.
    Clean(&'static str),
    /// `ca export` of the main data directory (`ca`) to this path of the test's directory.
    ExportMain(&'static str),
}

/// How one README line runs. `command` is the line as the README has it, without its comment and with
/// an optional `[...]` part either left out or put in (both variants are lines of their own).
struct Plan {
    command: &'static str,
    /// The data directory, a path in the test's directory: `ca` unless the line needs a new one.
    data: &'static str,
    before: &'static [Before],
    /// Environment for the line and its `before` steps: a variable and a file of the test's directory.
    env: &'static [(&'static str, &'static str)],
    /// The exit code: 0, or the one the README documents.
    code: i32,
    /// Text the output (stdout and stderr) must contain, where the README says what the line does.
    says: &'static [&'static str],
}

const fn run(command: &'static str) -> Plan {
    Plan {
        command,
        data: "ca",
        before: &[],
        env: &[],
        code: 0,
        says: &[],
    }
}

/// The alt names of the Quickstart's and the CLI block's `master-2`.
const PUPPET_ALT: &[&str] = &["puppet", "puppet.example.com"];
const PASSPHRASE_ENV: &[(&str, &str)] = &[("CA_KEY_PASSPHRASE_FILE", "passphrase")];
const NEW_PASSPHRASE_ENV: &[(&str, &str)] = &[("CA_KEY_PASSPHRASE_FILE", "new-passphrase")];

/// The block of "The `ca` CLI", in its order; each line after the ones above it, on the same CA.
const CLI_PLANS: &[Plan] = &[
    // RSA-4096 as written (no --key-type): the CA every later line works on.
    run("ca setup --certname ca.example.com --dns-alt-names puppet.example.com"),
    Plan {
        before: &[Before::CsrFile {
            file: "node1.csr",
            cn: "node1.example.com",
            alt: &[],
        }],
        says: &["node1.example.com"],
        ..run("ca submit node1.csr")
    },
    Plan {
        says: &["node1.example.com"],
        ..run("ca list")
    },
    run("ca sign node1.example.com"),
    Plan {
        before: &[Before::Pending {
            cn: "master-2",
            alt: PUPPET_ALT,
        }],
        says: &["Signed certificate for master-2"],
        ..run("ca sign --allow-dns-alt-names master-2")
    },
    run("ca revoke node1.example.com"),
    run("ca clean node1.example.com"),
    run("ca generate db1.example.com --dns-alt-names db.example.com --out ./ssl"),
    Plan {
        // `ca clean` above removed node1's certificate; a new one is issued for it.
        before: &[
            Before::Pending {
                cn: "node1.example.com",
                alt: &[],
            },
            Before::Sign("node1.example.com"),
        ],
        says: &["-----BEGIN CERTIFICATE-----"],
        ..run("ca print node1.example.com")
    },
    Plan {
        says: &["-----BEGIN X509 CRL-----"],
        ..run("ca crl")
    },
    Plan {
        says: &["Certificate Revocation List"],
        ..run("ca crl --text")
    },
    Plan {
        // master-2 was signed above; `ca check` explains a pending request, so it asks again.
        before: &[
            Before::Clean("master-2"),
            Before::Pending {
                cn: "master-2",
                alt: PUPPET_ALT,
            },
        ],
        says: &["master-2: pending request", "DNS:puppet"],
        ..run("ca check master-2")
    },
    run("ca prune"),
    run("ca prune --dry-run"),
    Plan {
        data: "intermediate",
        says: &["Created a new CA"],
        ..run("ca setup --intermediate ...")
    },
    Plan {
        data: "imported",
        before: &[Before::ExportMain("puppetserver-ca")],
        says: &["Imported the CA 'Puppet CA: ca.example.com'"],
        ..run("ca import --cadir /etc/puppetlabs/puppetserver/ca")
    },
    Plan {
        says: &["Exported the CA"],
        ..run("ca export --cadir /tmp/cadir")
    },
    run("ca fingerprint node1.example.com --digest sha256"),
    Plan {
        env: PASSPHRASE_ENV,
        says: &["ca_key.pem: encrypted"],
        ..run("ca key encrypt")
    },
    Plan {
        env: PASSPHRASE_ENV,
        says: &["ca_key.pem: re-encrypted"],
        ..run("ca key encrypt --new-passphrase-file F")
    },
    Plan {
        env: NEW_PASSPHRASE_ENV,
        says: &["ca_key.pem: decrypted"],
        ..run("ca key decrypt")
    },
    run("ca infra add compiler-1.example.com"),
];

/// Lines of the CLI block that are not run, with the reason. None at present: every line runs (the
/// import from a copy in puppetserver's layout, see [`SUBSTITUTIONS`]).
const CLI_EXCEPTIONS: &[(&str, &str)] = &[];

/// The block of "The CA key". The setup makes an encrypted CA of its own; the `ca key` lines work on
/// an existing, unencrypted CA ("an existing CA: encrypt its key in place"), `plain`.
const KEY_PLANS: &[Plan] = &[
    Plan {
        data: "encrypted",
        says: &["mode 0600, encrypted"],
        ..run("ca setup --encrypt-key --ca-key-passphrase-file /etc/ca/key-passphrase ...")
    },
    Plan {
        data: "plain",
        before: &[Before::Setup],
        env: PASSPHRASE_ENV,
        says: &["ca_key.pem: encrypted"],
        ..run("ca key encrypt")
    },
    Plan {
        data: "plain",
        env: PASSPHRASE_ENV,
        says: &["ca_key.pem: re-encrypted"],
        ..run("ca key encrypt --new-passphrase-file NEW")
    },
    Plan {
        data: "plain",
        env: NEW_PASSPHRASE_ENV,
        says: &["ca_key.pem: decrypted"],
        ..run("ca key decrypt")
    },
];

/// The Quickstart's `ca` lines (the CA host's, after the agent has asked).
const QUICKSTART_PLANS: &[Plan] = &[
    Plan {
        before: &[
            Before::Setup,
            Before::Pending {
                cn: "agent1.example.com",
                alt: &[],
            },
        ],
        says: &["agent1.example.com"],
        ..run("sudo ./target/release/ca list")
    },
    Plan {
        says: &["Signed certificate for agent1.example.com"],
        ..run("sudo ./target/release/ca sign agent1.example.com")
    },
    Plan {
        before: &[Before::Pending {
            cn: "master-2",
            alt: PUPPET_ALT,
        }],
        // "refused: names DNS:puppet, ... and the flag"
        code: 1,
        says: &["DNS:puppet", "--allow-dns-alt-names"],
        ..run("sudo ./target/release/ca sign master-2")
    },
    Plan {
        says: &["Signed certificate for master-2"],
        ..run("sudo ./target/release/ca sign --allow-dns-alt-names master-2")
    },
];

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The `sh` blocks of `text`, each as its lines.
fn sh_blocks(text: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        let fence = line.trim_start();
        match current.take() {
            None if fence == "```sh" => current = Some(Vec::new()),
            None => {}
            Some(block) if fence.starts_with("```") => blocks.push(block),
            Some(mut block) => {
                block.push(line);
                current = Some(block);
            }
        }
    }
    blocks
}

/// A line without its `# comment`, its words joined by single spaces; `[...]` optional parts give two
/// commands, one without and one with (recursively, for several).
fn commands_of(line: &str) -> Vec<String> {
    if line.trim_start().starts_with('#') {
        return Vec::new();
    }
    let code = match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    };
    if code.trim().is_empty() {
        return Vec::new();
    }
    let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        !code.contains(['"', '\'', '`', '$', '|', ';', '&', '<', '>']),
        "a README line this test cannot split into words: {code}"
    );
    let (Some(open), Some(close)) = (code.find('['), code.find(']')) else {
        return vec![code];
    };
    assert!(open < close, "{code}");
    let without = format!("{} {}", &code[..open], &code[close + 1..]);
    let with = format!(
        "{}{}{}",
        &code[..open],
        &code[open + 1..close],
        &code[close + 1..]
    );
    [without, with].iter().flat_map(|c| commands_of(c)).collect()
}

/// The commands of the `sh` block whose first line starts with `first`: every line of it.
fn block_commands(text: &str, first: &str) -> Vec<String> {
    let block = sh_blocks(text)
        .into_iter()
        .find(|b| b.first().is_some_and(|l| l.starts_with(first)))
        .unwrap_or_else(|| panic!("no README sh block starting with `{first}`"));
    block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| commands_of(l))
        .collect()
}

/// A temporary directory: the working directory of every line, holding the data directories and the
/// files of [`SUBSTITUTIONS`].
struct Session {
    tmp: TempDir,
}

impl Session {
    fn new() -> Session {
        let s = Session {
            tmp: tempfile::tempdir().unwrap(),
        };
        for (file, text) in [("passphrase", PASSPHRASE), ("new-passphrase", NEW_PASSPHRASE)] {
            let path = s.path(file);
            std::fs::write(&path, format!("{text}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        s
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The real `ca --data-dir <data> args...` in the session's directory, with `env` (files of the
    /// session) and nothing of the caller's `CA_*` environment.
    fn ca<S: AsRef<str>>(&self, data: &str, args: &[S], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(ca_binary());
        for v in [
            "CA_DATA_DIR",
            "CA_CONFIG",
            "CA_DATABASE_URL",
            "CA_KEY_PASSPHRASE",
            "CA_KEY_PASSPHRASE_FILE",
        ] {
            cmd.env_remove(v);
        }
        for (var, file) in env {
            cmd.env(var, self.path(file));
        }
        let out = cmd
            .current_dir(self.tmp.path())
            .arg("--data-dir")
            .arg(self.path(data))
            .args(args.iter().map(AsRef::as_ref))
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn csr(&self, file: &str, cn: &str, alt: &[&str]) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // As a Puppet agent asks: no SAN without alt names, else DNS:<certname> and the alt names.
        let sans: Vec<String> = match alt {
            [] => Vec::new(),
            _ => std::iter::once(cn)
                .chain(alt.iter().copied())
                .map(String::from)
                .collect(),
        };
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        std::fs::write(self.path(file), p.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
    }

    /// Makes `step` hold on `data`, with `env`, before `command`.
    fn before(&self, step: Before, data: &str, env: &[(&str, &str)], command: &str) {
        let ok = |args: &[&str], data: &str| {
            let run = self.ca(data, args, env);
            assert_eq!(run.code, 0, "before `{command}`: {step:?}: {run:#?}");
        };
        match step {
            Before::Setup => ok(
                &["setup", "--certname", "ca.example.com", "--key-type", "ec-p256"],
                data,
            ),
            Before::CsrFile { file, cn, alt } => self.csr(file, cn, alt),
            Before::Pending { cn, alt } => {
                let file = format!("before-{cn}.csr");
                self.csr(&file, cn, alt);
                ok(&["submit", &file], data);
            }
            Before::Sign(name) => ok(&["sign", name], data),
            Before::Clean(name) => ok(&["clean", name], data),
            Before::ExportMain(dir) => ok(
                &["export", "--cadir", &self.path(dir).display().to_string()],
                "ca",
            ),
        }
    }

    /// Runs `command` (the README's words, `prefix` first) by its plan.
    fn run(&self, command: &str, prefix: &[&str], plan: &Plan) {
        for &step in plan.before {
            self.before(step, plan.data, plan.env, command);
        }
        let words: Vec<&str> = command.split(' ').collect();
        assert_eq!(
            &words[..prefix.len()],
            prefix,
            "`{command}` does not start with `{}`",
            prefix.join(" ")
        );
        let mut args = Vec::new();
        for word in &words[prefix.len()..] {
            let Some((_, with, why)) = SUBSTITUTIONS.iter().find(|(w, _, _)| w == word) else {
                args.push(word.to_string());
                continue;
            };
            match with {
                With::File(name) => args.push(self.path(name).display().to_string()),
                With::Words(words) => args.extend(words.iter().map(|w| w.to_string())),
            }
            println!("  `{word}` substituted: {why}");
        }
        let out = self.ca(plan.data, &args, plan.env);
        assert_eq!(
            out.code,
            plan.code,
            "`{command}` (run as `ca --data-dir {} {}`): {out:#?}",
            plan.data,
            args.join(" ")
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        for needle in plan.says {
            assert!(
                text.contains(needle),
                "`{command}` does not say {needle:?}: {out:#?}"
            );
        }
    }
}

/// Runs `commands` (a block's, in its order) by `plans`, skipping `exceptions`; fails on a command
/// without either, and on a plan or an exception for a command the block does not have.
fn run_block(
    s: &Session,
    what: &str,
    commands: &[String],
    prefix: &[&str],
    plans: &[Plan],
    exceptions: &[(&str, &str)],
) {
    assert!(!commands.is_empty(), "{what}: no commands found");
    let planned: BTreeSet<&str> = plans.iter().map(|p| p.command).collect();
    let excepted: BTreeSet<&str> = exceptions.iter().map(|(c, _)| *c).collect();
    let found: BTreeSet<&str> = commands.iter().map(String::as_str).collect();
    let unaccounted: Vec<&&str> = found
        .iter()
        .filter(|c| !planned.contains(*c) && !excepted.contains(*c))
        .collect();
    assert!(
        unaccounted.is_empty(),
        "{what}: README lines neither run nor listed as an exception in tests/e2e/readme_commands.rs \
         (add a plan, or an exception with its reason): {unaccounted:#?}"
    );
    let stale: Vec<&&str> = planned.union(&excepted).filter(|c| !found.contains(*c)).collect();
    assert!(
        stale.is_empty(),
        "{what}: plans or exceptions for lines the README no longer has: {stale:#?}"
    );
    for command in commands {
        if let Some((_, why)) = exceptions.iter().find(|(c, _)| c == command) {
            println!("not run: `{command}`: {why}");
            continue;
        }
        let plan = plans.iter().find(|p| p.command == command).unwrap();
        s.run(command, prefix, plan);
        println!("ran: `{command}`");
    }
}

#[test]
fn the_ca_cli_block_runs_line_by_line() {
    let readme = readme();
    let commands = block_commands(&readme, "ca setup --certname ca.example.com");
    let s = Session::new();
    run_block(
        &s,
        "The `ca` CLI block",
        &commands,
        &["ca"],
        CLI_PLANS,
        CLI_EXCEPTIONS,
    );
    // What the lines made, where the README says.
    for file in [
        "ssl/certs/db1.example.com.pem",
        "ssl/private_keys/db1.example.com.pem",
    ] {
        assert!(
            s.path(file).exists(),
            "`ca generate ... --out ./ssl` wrote no {file}"
        );
    }
    assert!(s.path("cadir/ca_crt.pem").exists() && s.path("intermediate/root_key.pem").exists());
}

#[test]
fn the_ca_key_block_runs_line_by_line() {
    let readme = readme();
    let commands = block_commands(&readme, "ca setup --encrypt-key");
    let s = Session::new();
    run_block(&s, "The CA key block", &commands, &["ca"], KEY_PLANS, &[]);
    let key = std::fs::read_to_string(s.path("encrypted/ca_key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{key}");

    // "By hand on the CA host, as root: `sudo cat /etc/ca/key-passphrase | sudo -u ca ca
    // --ca-key-passphrase-file /dev/stdin sign NAME`", on the encrypted CA: the sudos dropped (the
    // test owns the CA), the passphrase file and `ca --data-dir` of the test, NAME a pending request.
    let line = readme
        .split('`')
        .find(|span| span.starts_with("sudo ") && span.contains("/dev/stdin"))
        .expect("the README's /dev/stdin line");
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    s.before(
        Before::Pending {
            cn: "node1.example.com",
            alt: &[],
        },
        "encrypted",
        PASSPHRASE_ENV,
        &line,
    );
    let mut shell = line.clone();
    for (from, to) in [
        (
            "sudo cat /etc/ca/key-passphrase",
            format!("cat '{}'", s.path("passphrase").display()),
        ),
        (
            "sudo -u ca ca ",
            format!(
                "'{}' --data-dir '{}' ",
                ca_binary().display(),
                s.path("encrypted").display()
            ),
        ),
        (" NAME", " node1.example.com".to_string()),
    ] {
        assert_eq!(shell.matches(from).count(), 1, "`{from}` in `{line}`");
        shell = shell.replace(from, &to);
    }
    let out = Command::new("sh")
        .args(["-c", &shell])
        .current_dir(s.tmp.path())
        .env_remove("CA_KEY_PASSPHRASE")
        .env_remove("CA_KEY_PASSPHRASE_FILE")
        .env_remove("CA_DATA_DIR")
        .env_remove("CA_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Signed certificate"),
        "`{line}` (run as `{shell}`): {out:?}"
    );
}

#[test]
fn the_quickstart_ca_lines_run() {
    let readme = readme();
    let section = &readme[readme.find("## Quickstart").expect("Quickstart")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |at| at + 3)];
    // Only the `ca` lines: `cargo build` and `ca-server` run in `server_binary`, `puppet ssl bootstrap`
    // in `real_clients`.
    let commands: Vec<String> = sh_blocks(section)
        .into_iter()
        .flatten()
        .flat_map(commands_of)
        .filter(|c| c.split(' ').take(2).eq(QUICKSTART_PREFIX.iter().copied()))
        .collect();
    let s = Session::new();
    run_block(
        &s,
        "The Quickstart",
        &commands,
        QUICKSTART_PREFIX,
        QUICKSTART_PLANS,
        &[],
    );
}

/// The guard itself: a new `ca` line in the block, neither planned nor excepted, fails the test before
/// anything runs.
#[test]
#[should_panic(expected = "neither run nor listed as an exception")]
fn a_readme_line_without_a_plan_fails() {
    let mut commands = block_commands(&readme(), "ca setup --certname ca.example.com");
    commands.push("ca frobnicate node1.example.com".to_string());
    run_block(
        &Session::new(),
        "The `ca` CLI block",
        &commands,
        &["ca"],
        CLI_PLANS,
        CLI_EXCEPTIONS,
    );
}

/// And a plan for a line the README dropped fails it too.
#[test]
#[should_panic(expected = "no longer has")]
fn a_plan_for_a_dropped_line_fails() {
    let mut commands = block_commands(&readme(), "ca setup --certname ca.example.com");
    commands.retain(|c| c != "ca prune --dry-run");
    run_block(
        &Session::new(),
        "The `ca` CLI block",
        &commands,
        &["ca"],
        CLI_PLANS,
        CLI_EXCEPTIONS,
    );
}
