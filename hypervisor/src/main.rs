#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor image runs on bare metal: use `cargo run` at the repository root");
    std::process::exit(2);
}
