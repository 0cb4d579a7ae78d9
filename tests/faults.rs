//! Fault tests: deliberate failures are reported on serial and end the run with `verdict=fail`.

mod common;

use common::*;
use xtask::{Level, RunSpec, Status};

/// `fault=<kind>` ends with verdict=fail, reason=exception and a `fault: exception=` line naming it.
fn exception_test(kind: &str, mnemonic: &str, vector: &str) {
    let o = boot(&qemu(&format!("fault={kind}")));
    assert_status(&o, Status::Fail);
    assert_verdict(&o, "fail");
    assert_eq!(
        o.summary_value("reason"),
        Some("exception"),
        "{}",
        context(&o)
    );
    let fault = o
        .lines_containing("fault: exception=")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no `fault: exception=` line{}", context(&o)));
    assert_eq!(fault.level, Some(Level::Error), "{}", context(&o));
    assert_eq!(fault.field("exception"), Some(mnemonic), "{}", context(&o));
    assert_eq!(fault.field("vector"), Some(vector), "{}", context(&o));
    for key in ["error_code", "rip", "cr2", "rsp", "cpu"] {
        assert!(
            fault.field(key).is_some(),
            "no {key}= in the fault line{}",
            context(&o)
        );
    }
    assert_eq!(fault.field("cpu"), Some("0"), "{}", context(&o));
    assert_exception_values(&o, &fault);
    assert_qemu_exit(&o, 35);
}

#[test]
fn invalid_opcode_is_reported() {
    exception_test("ud", "#UD", "6");
}

#[test]
fn page_fault_is_reported() {
    exception_test("pf", "#PF", "14");
}

#[test]
fn panic_is_reported() {
    let o = boot(&qemu("fault=panic"));
    assert_status(&o, Status::Fail);
    assert_verdict(&o, "fail");
    assert_eq!(o.summary_value("reason"), Some("panic"), "{}", context(&o));
    let panic = o
        .lines_containing("panic: ")
        .into_iter()
        .find(|l| l.level == Some(Level::Error))
        .unwrap_or_else(|| panic!("no ERROR `panic:` line{}", context(&o)));
    assert!(
        panic.message.contains(" at "),
        "no location in {panic:?}{}",
        context(&o)
    );
    assert!(
        panic.field("cpu").is_some(),
        "no cpu= in {panic:?}{}",
        context(&o)
    );
    assert_qemu_exit(&o, 35);
}

#[test]
fn log_level_debug_shows_debug_lines() {
    let quiet = boot(&qemu(""));
    assert_verdict(&quiet, "ok");
    assert!(
        quiet.lines_at(Level::Debug).is_empty(),
        "DEBUG lines at the default level{}",
        context(&quiet)
    );
    let verbose = boot(&qemu("log=debug"));
    assert_verdict(&verbose, "ok");
    assert!(
        !verbose.lines_at(Level::Debug).is_empty(),
        "no DEBUG lines with log=debug{}",
        context(&verbose)
    );
    assert!(
        verbose.lines_at(Level::Trace).is_empty(),
        "TRACE lines with log=debug{}",
        context(&verbose)
    );
}

/// A loader that enters the multiboot2 entry with the wrong magic (here: QEMU's multiboot1 loader,
/// EAX=0x2BADB002) must be caught by the 32-bit entry code: a `boot32:` line and exit value 0x11.
#[test]
fn garbled_loader_handoff_is_rejected() {
    let elf = xtask::build_image(false).unwrap_or_else(|e| panic!("{e}"));
    let out = xtask::image::target_dir()
        .join("test-images")
        .join(format!("garbled-handoff-{}.bin", std::process::id()));
    xtask::build_garbled_handoff_image(&elf, &out)
        .unwrap_or_else(|e| panic!("building {}: {e}", out.display()));
    let o = boot(&RunSpec {
        kernel: Some(out.clone()),
        ..qemu("")
    });
    let _ = std::fs::remove_file(&out);
    let line = o
        .lines()
        .into_iter()
        .find(|l| l.module == "boot32")
        .unwrap_or_else(|| panic!("no `boot32:` line{}", context(&o)));
    assert!(
        line.message.to_ascii_lowercase().contains("0x2badb002"),
        "the boot32 line does not name the magic it got: {line:?}{}",
        context(&o)
    );
    assert!(
        o.summary.is_none(),
        "no summary is possible before the logger exists{}",
        context(&o)
    );
    assert_status(&o, Status::NoSummary);
    assert_eq!(
        o.emulator_exit,
        Some(35),
        "the kernel must exit through port 0xf4 with 0x11 (QEMU status 35){}",
        context(&o)
    );
}

/// `fault=no_memory` starts the frame allocator empty, as if the loader's memory map had no usable RAM above
/// 1 MiB: the BSP's own stack is the first allocation, fails, and the run ends with reason=no_memory, the
/// injection and the failure both in the log. On an AP it does nothing but say so.
#[test]
fn no_usable_memory_ends_the_run_with_no_memory() {
    let o = boot(&qemu("fault=no_memory"));
    assert_status(&o, Status::Fail);
    assert_verdict(&o, "fail");
    assert_eq!(
        o.summary_value("reason"),
        Some("no_memory"),
        "{}",
        context(&o)
    );
    let injected = line(&o, "boot", "injecting fault=no_memory");
    assert_eq!(injected.level, Some(Level::Warn), "{}", context(&o));
    let failure = line(&o, "memory", "no memory for the BSP's stack");
    assert_eq!(failure.level, Some(Level::Error), "{}", context(&o));
    assert_eq!(failure.cpu, Some(0), "{}", context(&o));
    assert_qemu_exit(&o, 35);

    let o = boot(&RunSpec {
        smp: "2".into(),
        ..qemu("fault=no_memory fault_cpu=1")
    });
    assert_verdict(&o, "ok");
    line(
        &o,
        "boot",
        "fault=no_memory acts on the BSP only; fault_cpu=1 ignored",
    );
    assert_qemu_exit(&o, 33);
}
