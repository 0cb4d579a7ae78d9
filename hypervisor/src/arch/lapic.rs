//! The local APIC drivers (xAPIC through the MMIO page, x2APIC through MSRs, SDM vol. 3A ch. 11) and the
//! running core's APIC in the mode the BSP chose for every core: x2APIC when CPUID offers it (required for
//! APIC ids above 254), xAPIC otherwise. The encodings and the switch sequence are decisions of the `smp`
//! crate (`smp::apic`), tested on the host.

use super::cpuid::cpuid;
use super::msr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use smp::apic::{
    apic_id_from_cpuid, icr_bits, reg, x2apic_enable_sequence, x2apic_msr, ApicError, Icr,
    LocalApic, ICR_IDLE_POLLS, SVR_ENABLE,
};
use x86_64::VirtAddr;

/// xAPIC: registers in a 4 KiB MMIO page.
#[derive(Debug)]
pub struct XApic {
    base: VirtAddr,
}

impl XApic {
    /// A driver for the registers mapped at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the virtual address of a 4 KiB mapping of the local APIC register page
    /// (physical address from the MADT, normally [`DEFAULT_LAPIC_BASE`]), mapped uncacheable,
    /// readable and writable for the whole life of the value and of every copy of the address;
    /// the local APIC of every CPU that uses the value must be in xAPIC mode
    /// (IA32_APIC_BASE EN=1, EXTD=0). No other code may hold Rust references to that page.
    pub const unsafe fn new(base: VirtAddr) -> Self {
        Self { base }
    }

    /// Virtual address of the register page.
    pub fn base(&self) -> VirtAddr {
        self.base
    }

    fn reg_ptr(&self, reg: u32) -> *mut u32 {
        debug_assert!(reg < 0x400 && reg.is_multiple_of(16));
        (self.base.as_u64() + u64::from(reg)) as *mut u32
    }

    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `new`'s contract: `base` maps the register page for reads; `reg` is one of the
        // offsets in `reg` (< 0x400, 16-byte aligned) so the u32 is in the page and aligned.
        unsafe { core::ptr::read_volatile(self.reg_ptr(reg)) }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: as in `read`, for writes; APIC registers are not Rust-visible memory.
        unsafe { core::ptr::write_volatile(self.reg_ptr(reg), value) }
    }
}

impl LocalApic for XApic {
    fn id(&self) -> u32 {
        self.read(reg::ID) >> 24
    }

    fn send_ipi(&self, icr: Icr) -> Result<(), ApicError> {
        let high = icr.xapic_high().ok_or(ApicError::DestinationOutOfRange {
            apic_id: icr.destination(),
        })?;
        if !self.wait_icr_idle(ICR_IDLE_POLLS) {
            return Err(ApicError::IcrBusy);
        }
        // SDM §11.6.1: the write to the low half sends the IPI, so the high half goes first.
        self.write(reg::ICR_HIGH, high);
        self.write(reg::ICR_LOW, icr.low());
        Ok(())
    }

    fn icr_busy(&self) -> bool {
        self.read(reg::ICR_LOW) & icr_bits::DELIVERY_STATUS != 0
    }

    fn eoi(&self) {
        self.write(reg::EOI, 0);
    }

    fn enable(&self, spurious_vector: u8) {
        let svr = self.read(reg::SVR) & !0xFF;
        self.write(reg::SVR, svr | SVR_ENABLE | u32::from(spurious_vector));
    }

    fn error_status(&self) -> u32 {
        self.write(reg::ESR, 0);
        self.read(reg::ESR)
    }
}

/// x2APIC: registers are MSRs 0x800..0x8FF (SDM §11.12).
#[derive(Debug, Clone, Copy)]
pub struct X2Apic {
    _private: (),
}

impl X2Apic {
    /// Switches this CPU's local APIC to x2APIC mode (EN then EXTD in IA32_APIC_BASE) and
    /// returns the driver.
    ///
    /// # Safety
    ///
    /// CPL 0; the CPU supports x2APIC (see [`x2apic_supported`]); nothing on this CPU keeps
    /// using the xAPIC MMIO interface afterwards. The contract of [`X2Apic::new`] must then hold
    /// for every CPU that uses the returned value.
    pub unsafe fn enable() -> X2Apic {
        // SAFETY: CPL 0 (contract); IA32_APIC_BASE is architectural.
        let current = unsafe { msr::read(msr::IA32_APIC_BASE) };
        for value in x2apic_enable_sequence(current).into_iter().flatten() {
            // SAFETY: x2APIC is supported (contract), the sequence follows the legal state
            // transitions, and the base address bits are unchanged.
            unsafe { msr::write(msr::IA32_APIC_BASE, value) };
        }
        // SAFETY: the APIC is now in x2APIC mode.
        unsafe { X2Apic::new() }
    }

    /// A driver for an APIC already in x2APIC mode.
    ///
    /// # Safety
    ///
    /// Every CPU that uses the value runs at CPL 0 with its local APIC in x2APIC mode
    /// (IA32_APIC_BASE EN=1, EXTD=1).
    pub const unsafe fn new() -> X2Apic {
        X2Apic { _private: () }
    }

    fn read(&self, reg: u32) -> u64 {
        // SAFETY: type invariant (`new`): x2APIC mode at CPL 0, so the x2APIC MSRs exist; only
        // readable registers (ID, SVR, ESR) are passed here.
        unsafe { msr::read(x2apic_msr(reg)) }
    }

    fn write(&self, reg: u32, value: u64) {
        // SAFETY: type invariant (`new`); APIC registers do not map memory.
        unsafe { msr::write(x2apic_msr(reg), value) }
    }
}

/// Orders earlier memory writes before a following x2APIC MSR write: WRMSR to the x2APIC
/// MSRs is not serializing (SDM §11.12.3), so an AP could otherwise start before it can see
/// the data written for it. Linux uses the same MFENCE; LFENCE pair.
fn x2apic_write_fence() {
    // SAFETY: MFENCE and LFENCE only order memory accesses; no registers, flags or stack used.
    unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) }
}

impl LocalApic for X2Apic {
    fn id(&self) -> u32 {
        self.read(reg::ID) as u32
    }

    fn send_ipi(&self, icr: Icr) -> Result<(), ApicError> {
        x2apic_write_fence();
        self.write(reg::ICR_LOW, icr.x2apic_value());
        Ok(())
    }

    fn icr_busy(&self) -> bool {
        false
    }

    fn eoi(&self) {
        self.write(reg::EOI, 0);
    }

    fn enable(&self, spurious_vector: u8) {
        let svr = self.read(reg::SVR) & !0xFF;
        self.write(
            reg::SVR,
            svr | u64::from(SVR_ENABLE) | u64::from(spurious_vector),
        );
    }

    fn error_status(&self) -> u32 {
        self.write(reg::ESR, 0);
        self.read(reg::ESR) as u32
    }
}

/// Whether the CPU supports x2APIC (CPUID.01H:ECX bit 21).
pub fn x2apic_supported() -> bool {
    cpuid(1, 0).ecx & (1 << 21) != 0
}

/// The executing CPU's initial APIC id, from CPUID (works in either APIC mode and before the
/// APIC is mapped). Leaf 0x1F is preferred, then 0xB; a leaf counts as present when it is
/// within the maximum leaf and its sub-leaf 0 reports `EBX[15:0] != 0` (SDM CPUID, leaf 0BH).
pub fn cpuid_apic_id() -> u32 {
    let max_leaf = cpuid(0, 0).eax;
    let topology = [0x1F, 0xB]
        .into_iter()
        .filter(|&leaf| leaf <= max_leaf)
        .map(|leaf| cpuid(leaf, 0))
        .find(|r| r.ebx & 0xFFFF != 0)
        .map(|r| r.edx);
    apic_id_from_cpuid(cpuid(1, 0).ebx, topology)
}

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

/// Chooses the system's APIC mode on the BSP, before its PCB is built: x2APIC when the CPU supports it
/// (SDM vol. 3A 11.12.1), and then switches the BSP's APIC to it, so that its PCB line tells the mode it
/// runs in. Returns true for x2APIC.
pub fn choose_mode_on_bsp() -> bool {
    X2APIC_MODE.store(x2apic_supported(), Ordering::Relaxed);
    if x2apic_mode() {
        enable_on_this_cpu()
    } else {
        false
    }
}

/// Takes the xAPIC register base from the MADT (`lapic_base`) and enables the BSP's APIC in the mode
/// [`choose_mode_on_bsp`] chose. Returns true for x2APIC.
pub fn init_bsp(lapic_base: u64) -> bool {
    XAPIC_BASE.store(lapic_base, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap page standing in for the MMIO page.
    struct FakePage {
        words: Vec<u32>,
    }

    impl FakePage {
        fn new() -> Self {
            Self {
                words: vec![0; 1024],
            }
        }
        fn apic(&mut self) -> XApic {
            // SAFETY: the vector is 4 KiB, lives as long as the test, and is only accessed
            // through this pointer while the driver is in use.
            unsafe { XApic::new(VirtAddr::from_ptr(self.words.as_mut_ptr())) }
        }
        fn get(&self, reg: u32) -> u32 {
            self.words[reg as usize / 4]
        }
        fn set(&mut self, reg: u32, v: u32) {
            self.words[reg as usize / 4] = v;
        }
    }

    #[test]
    fn xapic_driver_register_writes() {
        let mut page = FakePage::new();
        page.set(reg::ID, 7 << 24 | 0xABCD);
        page.set(reg::SVR, 0xFF);
        page.set(reg::EOI, 0xDEAD);
        let apic = page.apic();
        assert_eq!(apic.id(), 7);
        apic.send_init(3).unwrap();
        assert_eq!(page.get(reg::ICR_HIGH), 3 << 24);
        assert_eq!(page.get(reg::ICR_LOW), 0xC500);
        let apic = page.apic();
        apic.send_sipi(0xFE, 0x9E).unwrap();
        assert_eq!(page.get(reg::ICR_HIGH), 0xFE << 24);
        assert_eq!(page.get(reg::ICR_LOW), 0x469E);
        let apic = page.apic();
        apic.send_init_deassert(1).unwrap();
        assert_eq!(page.get(reg::ICR_LOW), 0x8500);
        let apic = page.apic();
        apic.eoi();
        apic.enable(0x27);
        assert_eq!(page.get(reg::EOI), 0);
        assert_eq!(page.get(reg::SVR), 0x127);
        let apic = page.apic();
        assert_eq!(apic.error_status(), 0);
        assert_eq!(
            apic.send_init(256),
            Err(ApicError::DestinationOutOfRange { apic_id: 256 })
        );
    }

    #[test]
    fn xapic_busy_icr_is_reported() {
        let mut page = FakePage::new();
        page.set(reg::ICR_LOW, icr_bits::DELIVERY_STATUS);
        let apic = page.apic();
        assert!(apic.icr_busy());
        assert!(!apic.wait_icr_idle(10));
        assert_eq!(apic.send_sipi(1, 8), Err(ApicError::IcrBusy));
        // Nothing was written.
        assert_eq!(page.get(reg::ICR_HIGH), 0);
        assert_eq!(page.get(reg::ICR_LOW), icr_bits::DELIVERY_STATUS);
    }

    #[test]
    fn cpuid_apic_id_on_the_host() {
        // Runs on the host: just check it does not fault and matches leaf 1 in its low 8 bits.
        let id = cpuid_apic_id();
        assert_eq!(id & 0xFF, core::arch::x86_64::__cpuid(1).ebx >> 24);
    }
}
