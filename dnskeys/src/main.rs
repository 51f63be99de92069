//! `dnskeys`: see the library's [`dnskeys::cli`] and `dnskeys --help`.

fn main() -> std::process::ExitCode {
    dnskeys::cli::main()
}
