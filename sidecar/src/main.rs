//! The `stockroom` sidecar binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    stockroom::main()
}
