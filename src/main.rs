use clap::Parser;

fn main() {
    let cli = vbench::cli::Cli::parse();
    let code = match vbench::run(cli) {
        Ok(()) => 0,
        Err(err) => {
            vbench::report_error(&err);
            err.exit_code()
        }
    };
    std::process::exit(code);
}
