//! `gradus-sandbox-cell`: the native cell supervisor of gradus-sandbox's cold
//! mode as a program of its own. A sandbox starts it once per pool slot (see
//! `gradus_sandbox::cell`); it is not meant to be run by hand.

fn main() {
    gradus_sandbox::cell::main_if_requested();
    eprintln!(
        "gradus-sandbox-cell: the cell launcher of gradus-sandbox; a sandbox starts it \
         with `{} {}` and its control socket on fd 0",
        gradus_sandbox::cell::ARG,
        gradus_sandbox::cell::PROTOCOL
    );
    std::process::exit(2);
}
