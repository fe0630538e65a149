//! `ca`, the admin CLI. [`run`] takes the arguments and the output streams, so tests capture
//! everything it prints and its exit code without spawning a process.

pub mod backend;
pub mod cli;
mod commands;
mod local;
pub mod out;
pub mod remote;

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

pub use out::Out;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the operation failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: i32 = 2;

/// Runs `ca` with `args` (the first is the program name), writing to `stdout`/`stderr`. Returns the
/// exit code. Must not be called from inside an async runtime.
pub fn run<I, T>(args: I, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let text = e.render().to_string();
            let _ = if code == 0 {
                stdout.write_all(text.as_bytes())
            } else {
                stderr.write_all(text.as_bytes())
            };
            return code;
        }
    };
    let mut out = Out::new(stdout, stderr);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&format!(
                "cannot start the runtime: {}",
                ca_server::error::Chain(&e)
            ));
            return EXIT_FAILED;
        }
    };
    match rt.block_on(commands::dispatch(cli, &mut out)) {
        Ok(code) => code,
        Err(e) => {
            // What failed, then each cause (one line).
            out.error(&format!("{e:#}"));
            EXIT_FAILED
        }
    }
}
