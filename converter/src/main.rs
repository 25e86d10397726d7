//! `converter`: quantize a DDPM UNet ONNX into a ddpm-edge artifact, inspect one,
//! sample from it, compare it against the float model (see `converter --help`).

fn main() -> std::process::ExitCode {
    ddpm_converter::cli::main()
}
