use clap::Parser;

fn main() {
    let cli = vbench::cmd::Cli::parse();
    let code = match vbench::cmd::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            vbench::cmd::report_error(&err);
            err.exit_code()
        }
    };
    std::process::exit(code);
}
