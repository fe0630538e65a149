fn main() {
    // `ca --generate man|complete-bash|...`: the man page and shell completions (packaging).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, what] = args.as_slice() {
        if flag == "--generate" {
            use clap::CommandFactory as _;
            let cmd = ca_cli::cli::Cli::command();
            if let Err(e) = ca_server::generate::generate(cmd, what, &mut std::io::stdout()) {
                eprintln!("ca: {e:#}");
                std::process::exit(2);
            }
            return;
        }
    }
    let code = ca_cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
