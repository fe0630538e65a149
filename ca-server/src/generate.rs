//! `--generate man|complete-bash|complete-zsh|complete-fish` of `ca` and `ca-server`: the man page
//! and shell completions made from the clap definitions (the Debian package ships them).

use std::io::Write;

/// What `--generate` can make.
pub const KINDS: &str = "man, complete-bash, complete-zsh, complete-fish";

/// Writes the man page or a completion script of `cmd` to `out`.
pub fn generate(mut cmd: clap::Command, what: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    let shell = match what {
        "man" => {
            return clap_mangen::Man::new(cmd)
                .render(out)
                .context("cannot write the man page");
        }
        "complete-bash" => Shell::Bash,
        "complete-zsh" => Shell::Zsh,
        "complete-fish" => Shell::Fish,
        other => anyhow::bail!("--generate {other}: use one of {KINDS}"),
    };
    clap_complete::generate(shell, &mut cmd, name, out);
    Ok(())
}
