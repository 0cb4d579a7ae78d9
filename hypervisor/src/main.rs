#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn boot_rust_entry(loader_kind: u32, info_paddr: u32) -> ! {
    hypervisor::start(loader_kind, info_paddr)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hypervisor::report_panic(info)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor image runs on bare metal: use `cargo run` at the repository root");
    std::process::exit(2);
}
