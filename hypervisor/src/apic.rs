//! The local APIC of the running core, in the mode the BSP chose for every core: x2APIC when CPUID offers it
//! (required for APIC ids above 254), xAPIC through the MMIO page otherwise.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use smp::apic::{ApicError, Icr, LocalApic, X2Apic, XApic};
use x86_64::VirtAddr;

static X2APIC_MODE: AtomicBool = AtomicBool::new(false);
static XAPIC_BASE: AtomicU64 = AtomicU64::new(smp::apic::DEFAULT_LAPIC_BASE);

/// Either driver, chosen once for the whole system.
pub enum Lapic {
    X(XApic),
    X2(X2Apic),
}

impl LocalApic for Lapic {
    fn id(&self) -> u32 {
        match self {
            Lapic::X(a) => a.id(),
            Lapic::X2(a) => a.id(),
        }
    }
    fn send_ipi(&self, icr: Icr) -> Result<(), ApicError> {
        match self {
            Lapic::X(a) => a.send_ipi(icr),
            Lapic::X2(a) => a.send_ipi(icr),
        }
    }
    fn icr_busy(&self) -> bool {
        match self {
            Lapic::X(a) => a.icr_busy(),
            Lapic::X2(a) => a.icr_busy(),
        }
    }
    fn eoi(&self) {
        match self {
            Lapic::X(a) => a.eoi(),
            Lapic::X2(a) => a.eoi(),
        }
    }
    fn enable(&self, spurious_vector: u8) {
        match self {
            Lapic::X(a) => a.enable(spurious_vector),
            Lapic::X2(a) => a.enable(spurious_vector),
        }
    }
    fn error_status(&self) -> u32 {
        match self {
            Lapic::X(a) => a.error_status(),
            Lapic::X2(a) => a.error_status(),
        }
    }
}

pub const SPURIOUS_VECTOR: u8 = 0xFF;

/// Chooses the mode on the BSP (`lapic_base` from the MADT) and enables the BSP's APIC in it.
/// Returns true for x2APIC.
pub fn init_bsp(lapic_base: u64) -> bool {
    XAPIC_BASE.store(lapic_base, Ordering::Relaxed);
    X2APIC_MODE.store(smp::apic::x2apic_supported(), Ordering::Relaxed);
    enable_on_this_cpu()
}

pub fn x2apic_mode() -> bool {
    X2APIC_MODE.load(Ordering::Relaxed)
}

/// Puts this core's APIC in the system's mode and software-enables it. Returns true for x2APIC.
pub fn enable_on_this_cpu() -> bool {
    let apic = if x2apic_mode() {
        // SAFETY: the BSP chose x2APIC mode because CPUID reports it; every core switches (this function),
        // and nothing uses the xAPIC MMIO page afterwards.
        Lapic::X2(unsafe { X2Apic::enable() })
    } else {
        local()
    };
    apic.enable(SPURIOUS_VECTOR);
    x2apic_mode()
}

/// The running core's APIC driver.
pub fn local() -> Lapic {
    if x2apic_mode() {
        // SAFETY: in x2APIC mode every core switched in `enable_on_this_cpu` before using the driver.
        Lapic::X2(unsafe { X2Apic::new() })
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: the MADT's local APIC address lies in the identity map; the page at 0xFEE00000 is mapped
        // uncached by entry.s (other bases are made uncached by the MTRRs firmware sets for MMIO); every core
        // stays in xAPIC mode.
        Lapic::X(unsafe { XApic::new(VirtAddr::new(base)) })
    }
}
