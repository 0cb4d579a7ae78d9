// The bare-metal image is linked with the boot crate's linker script; host builds (unit tests) are not.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=../boot/linker.ld");
    println!("cargo:rerun-if-changed=../boot/src/entry.s");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{manifest}/../boot/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
