//! The Debian package, as an operator uses it: `scripts/build-deb` builds it, `dpkg -i` installs it on
//! this machine (binaries, unit, /etc/ca/config.toml, the `ca` system user and /var/lib/ca, man pages
//! and completions), the installed server runs as `ca` on a free port, the installed `ca` signs a
//! real Puppet agent, and `dpkg --purge` removes it again (the CA's data stays).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{spawn_until_listening, API_LISTENING};
use crate::real_clients::{agent_args_at, require, text};

fn root_cmd(program: &str) -> Command {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if root {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg(program);
        c
    }
}

fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn uid_of(user: &str) -> u32 {
    run_ok({
        let mut c = Command::new("id");
        c.args(["-u", user]);
        c
    })
    .trim()
    .parse()
    .unwrap()
}

/// `dpkg --purge ca` when dropped, whatever happened.
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = root_cmd("dpkg")
            .args(["--purge", "ca"])
            .stdout(Stdio::null())
            .status();
    }
}

#[test]
fn the_debian_package_installs_serves_a_real_agent_and_purges() {
    require("dpkg-deb");
    let out_dir = tempfile::tempdir().unwrap();
    let built = run_ok({
        let mut c = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb"));
        // The debug binaries scripts/test has built: the same package, without a release build.
        c.arg(out_dir.path()).env("CA_DEB_PROFILE", "dev");
        c
    });
    let deb = built.trim().lines().last().unwrap().to_string();
    let info = run_ok({
        let mut c = Command::new("dpkg-deb");
        c.args(["--contents", &deb]);
        c
    });
    for f in [
        "./usr/bin/ca-server",
        "./usr/bin/ca",
        "./lib/systemd/system/ca-server.service",
        "./etc/ca/config.toml",
        "./usr/share/man/man1/ca.1.gz",
        "./usr/share/man/man1/ca-server.1.gz",
        "./usr/share/bash-completion/completions/ca",
        "./usr/share/zsh/vendor-completions/_ca-server",
        "./usr/share/fish/vendor_completions.d/ca.fish",
    ] {
        assert!(info.contains(f), "{f} missing from the package:\n{info}");
    }

    run_ok({
        let mut c = root_cmd("dpkg");
        c.args(["-i", &deb]);
        c
    });
    let _installed = Installed;
    let ca_uid = uid_of("ca");
    let state = std::fs::metadata("/var/lib/ca").unwrap();
    assert_eq!((state.uid(), state.permissions().mode() & 0o777), (ca_uid, 0o700));
    let unit = std::fs::read_to_string("/lib/systemd/system/ca-server.service").unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/ca-server") && unit.contains("Type=notify"),
        "{unit}"
    );
    let man = run_ok({
        let mut c = Command::new("sh");
        c.args(["-c", "zcat /usr/share/man/man1/ca.1.gz"]);
        c
    });
    assert!(man.contains(".TH ca") && man.contains("sign"), "{man}");

    // The installed server, as the `ca` user, on a data directory of its own.
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = work.path().join("data");
    run_ok({
        let mut c = root_cmd("install");
        c.args(["-d", "-o", "ca", "-g", "ca", "-m", "0700", data.to_str().unwrap()]);
        c
    });
    let log = work.path().join("server.log");
    let as_ca = |program: &str| {
        let mut c = root_cmd("runuser");
        c.args(["-u", "ca", "--", program, "--data-dir", data.to_str().unwrap()]);
        c
    };
    let (mut server, port) = spawn_until_listening(
        as_ca("/usr/bin/ca-server")
            .args(["--listen", "127.0.0.1:0", "--certname", "pkg-ca.example.test"])
            .args(["--dns-alt-names", "localhost"])
            .process_group(0),
        &log,
        API_LISTENING,
        Duration::from_secs(60),
    );
    let stop = |server: &mut std::process::Child| {
        let _ = root_cmd("kill")
            .args(["-TERM", "--", &format!("-{}", server.id())])
            .status();
        let _ = server.wait();
    };
    let key = std::fs::metadata(data.join("ca_key.pem")).unwrap();
    assert_eq!(key.uid(), ca_uid, "the CA belongs to the ca user");

    // A real agent, signed with the installed `ca`.
    require("puppet");
    let agent_dir = work.path().join("agent");
    let name = "pkg-agent.example.test";
    let bootstrap = || {
        Command::new("puppet")
            .args(["ssl", "bootstrap", "--waitforcert", "0"])
            .args(agent_args_at(port, &agent_dir, name))
            .output()
            .unwrap()
    };
    let first = bootstrap();
    let signed = as_ca("/usr/bin/ca").args(["sign", name]).output().unwrap();
    let second = bootstrap();
    stop(&mut server);
    assert!(!first.status.success(), "not signed yet: {}", text(&first));
    assert!(signed.status.success(), "{}", text(&signed));
    assert!(second.status.success(), "{}", text(&second));

    run_ok({
        let mut c = root_cmd("dpkg");
        c.args(["--purge", "ca"]);
        c
    });
    for f in [
        "/usr/bin/ca-server",
        "/usr/bin/ca",
        "/etc/ca/config.toml",
        "/lib/systemd/system/ca-server.service",
    ] {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    assert!(
        Path::new("/var/lib/ca").exists(),
        "a CA's data is never removed by the package"
    );
}
