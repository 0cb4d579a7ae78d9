//! A fake processor for host tests: CPUID, the VMX MSRs, a lockable IA32_FEATURE_CONTROL, CR0/CR4, and the
//! checks VMXON, VMCLEAR, VMPTRLD, VMPTRST, VMREAD and VMXOFF make in their SDM pseudocode (vol. 3C 31.3),
//! including the current-VMCS pointer and VMfailInvalid versus VMfailValid (31.2).
//!
//! Anything that would fault on real hardware without a fix-up (WRMSR to a locked MSR, a VMX instruction outside
//! VMX operation, an illegal CR write in VMX operation) panics: the test fails the way the machine would. The
//! probes (`*_probe`) return the fault instead when `fault_fixup` is set, as the kernel's fix-up does.

use std::cell::Cell;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::basic::{Region, RegionPair};
use super::feature_control::{LOCK, VMX_INSIDE_SMX, VMX_OUTSIDE_SMX};
use super::fixed_bits::{CR0_PE, CR0_PG, CR4_LA57, CR4_PAE, CR4_VMXE};
use super::{
    CpuidResult, Exception, InstrOutcome, InstructionError, VmFail, VmxCpu, IA32_FEATURE_CONTROL,
    IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0,
    IA32_VMX_CR4_FIXED1, VMCS_VM_INSTRUCTION_ERROR,
};

/// The worst interleaving of cores sharing IA32_FEATURE_CONTROL, made deterministic: a core that reads the MSR
/// waits until every core has read it, so all of them see it unlocked and each then writes it (the second
/// write is the #GP of a locked MSR, a panic). A read made by a core while it holds the global feature-control
/// lock does not wait: that lock is what keeps the other cores from reading, so waiting would deadlock.
pub struct ReadRendezvous {
    cores: usize,
    arrived: Mutex<usize>,
    all_arrived: Condvar,
}

impl ReadRendezvous {
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            cores,
            arrived: Mutex::new(0),
            all_arrived: Condvar::new(),
        })
    }

    fn arrive(&self) {
        if super::feature_control::lock_is_held() {
            return;
        }
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.all_arrived.notify_all();
        let (arrived, timeout) = self
            .all_arrived
            .wait_timeout_while(arrived, Duration::from_secs(30), |arrived| {
                *arrived < self.cores
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "rendezvous: only {} of {} cores read IA32_FEATURE_CONTROL",
            *arrived,
            self.cores
        );
    }
}

/// One 4-KiB page of fake physical memory.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

impl Page {
    pub fn new() -> Box<Self> {
        Box::new(Self([0; 4096]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instr {
    Vmxon,
    Vmxoff,
    Vmclear,
    Vmptrld,
    Vmptrst,
    Vmread,
    /// The self-test's WRMSR probe.
    Wrmsr,
    /// The self-test's MOV-to-CR0 and MOV-to-CR4 probes.
    MovCr0,
    MovCr4,
}

/// How IA32_FEATURE_CONTROL treats writes while unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcWrites {
    Stored,
    /// Silently ignored (QEMU TCG does this).
    Dropped,
}

/// Deliberate deviations from the SDM, to check that the self-test notices them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    /// VMXON ignores bits 11:0 of its operand.
    VmxonIgnoresAlignment,
    /// VMPTRLD accepts the VMXON pointer.
    VmptrldAcceptsVmxonPointer,
    /// VMCLEAR of the VMXON pointer reports error 2 instead of 3.
    VmclearReportsWrongError,
    /// VMXON ignores the lock bit of IA32_FEATURE_CONTROL (only bit 2 counts).
    VmxonIgnoresFeatureControlLock,
    /// WRMSR to IA32_FEATURE_CONTROL is taken even after the lock (no #GP).
    FeatureControlWritableAfterLock,
    /// VMXON (and MOV to CR in VMX operation) does not check that CR0/CR4 have every FIXED0 bit set.
    VmxonIgnoresFixed0,
    /// VMXON (and MOV to CR in VMX operation) does not check that CR0/CR4 have every bit FIXED1 forbids clear.
    VmxonIgnoresFixed1,
    /// VMXON raises #GP when CR4 has a bit set besides PAE and the FIXED0 bits (flexible bits are not flexible).
    VmxonFaultsOnFlexibleCr4Bits,
    /// VMPTRLD does not check the revision identifier.
    VmptrldIgnoresRevision,
    /// VMPTRLD with a wrong revision identifier reports error 11 but makes the operand current anyway.
    VmptrldFailureChangesCurrent,
}

pub struct FakeCpu {
    pub vmx: bool,
    pub smx: bool,
    pub maxphyaddr: u8,
    pub max_extended_leaf: u32,
    msrs: HashMap<u32, u64>,
    feature_control: Arc<Mutex<u64>>,
    pub fc_writes: FcWrites,
    /// Cores that share IA32_FEATURE_CONTROL and all read it before any of them may go on (see
    /// [`ReadRendezvous`]).
    pub read_rendezvous: Option<Arc<ReadRendezvous>>,
    pub cr0: u64,
    pub cr4: u64,
    pub cr0_ignores_writes: bool,
    /// The CR4 bits MOV to CR4 accepts (the processor's CR4 features); a probe setting any other bit gets #GP
    /// (SDM vol. 3A 2.5). Plain `write_cr4` does not check it (the stage never sets such a bit).
    pub cr4_accepts: u64,
    /// `Some(VMXON pointer)` while in VMX root operation.
    pub vmxon_ptr: Option<u64>,
    pub current_vmcs: Option<u64>,
    instruction_error: u32,
    /// The kernel's fix-up table is available: faults from `vmxon_probe` are returned instead of panicking.
    pub fault_fixup: bool,
    pub quirk: Option<Quirk>,
    injected: Vec<(Instr, VmFail)>,
    /// Faults to raise on the next execution of an instruction (after the SDM's own fault checks).
    injected_faults: Vec<(Instr, Exception)>,
    /// VMPTRST returns this instead of the current-VMCS pointer.
    pub vmptrst_lies: Option<u64>,
    memory: HashMap<u64, *mut u8>,
    /// Every VMX instruction executed, with its outcome.
    pub executed: Vec<(Instr, InstrOutcome)>,
    msr_reads: Cell<usize>,
    pub msr_writes: Vec<(u32, u64)>,
    /// Writes to (CR0, CR4).
    pub cr_writes: (usize, usize),
    /// The first 32 bits of the region each VMXON that got as far as the revision check found.
    pub vmxon_revisions: Vec<u32>,
    /// CR0 and CR4 at each VMXON.
    pub vmxon_control_registers: Vec<(u64, u64)>,
}

impl FakeCpu {
    /// Bochs 2.7's haswell model as measured (docs: shared/emulators.md), feature control locked as 0x5 like the
    /// Bochs BIOS leaves it, CR0 = PG|ET|PE (NE clear), CR4 = PAE.
    pub fn bochs_haswell() -> Self {
        let msrs = HashMap::from([
            (IA32_VMX_BASIC, 0x00d8_1000_0000_002b),
            (IA32_VMX_CR0_FIXED0, 0x8000_0021),
            (IA32_VMX_CR0_FIXED1, 0xffff_ffff),
            (IA32_VMX_CR4_FIXED0, 0x2000),
            (IA32_VMX_CR4_FIXED1, 0x1727ff),
            // Control and capability MSRs: consistent values in the shape of Bochs haswell (SDM vol. 3D
            // A.3-A.10), not measured bit for bit.
            (0x481, 0x0000_007f_0000_0016),
            (0x482, 0xfff9_fffe_0401_e172),
            (0x483, 0x003f_ffff_0003_6dff),
            (0x484, 0x0000_ffff_0000_11ff),
            (0x48A, 0x2e),
            (0x48B, 0x0000_00ff_0000_0000),
            (0x48C, 0x0000_0f01_0633_4141),
            (0x48D, 0x0000_007f_0000_0016),
            (0x48E, 0xfff9_fffe_0400_6172),
            (0x48F, 0x003f_ffff_0003_6dfb),
            (0x490, 0x0000_ffff_0000_11fb),
        ]);
        Self {
            vmx: true,
            smx: false,
            maxphyaddr: 40,
            max_extended_leaf: 0x8000_0008,
            msrs,
            feature_control: Arc::new(Mutex::new(LOCK | VMX_OUTSIDE_SMX)),
            fc_writes: FcWrites::Stored,
            read_rendezvous: None,
            cr0: 0x8000_0011,
            cr4: 0x20,
            cr0_ignores_writes: false,
            // Bochs haswell's CR4 features: VME..OSXMMEXCPT, VMXE, FSGSBASE, PCIDE, OSXSAVE, SMEP (its FIXED1).
            cr4_accepts: 0x1727ff,
            vmxon_ptr: None,
            current_vmcs: None,
            instruction_error: 0,
            fault_fixup: false,
            quirk: None,
            injected: Vec::new(),
            injected_faults: Vec::new(),
            vmptrst_lies: None,
            memory: HashMap::new(),
            executed: Vec::new(),
            msr_reads: Cell::new(0),
            msr_writes: Vec::new(),
            cr_writes: (0, 0),
            vmxon_revisions: Vec::new(),
            vmxon_control_registers: Vec::new(),
        }
    }

    pub fn set_msr(&mut self, msr: u32, value: u64) {
        self.msrs.insert(msr, value);
    }

    pub fn set_feature_control(&mut self, value: u64) {
        *self.feature_control.lock().unwrap() = value;
    }

    pub fn feature_control(&self) -> u64 {
        *self.feature_control.lock().unwrap()
    }

    /// Makes this fake share IA32_FEATURE_CONTROL with others (a package-scoped MSR).
    pub fn share_feature_control(&mut self, shared: Arc<Mutex<u64>>) {
        self.feature_control = shared;
    }

    pub fn msr_reads(&self) -> usize {
        self.msr_reads.get()
    }

    pub fn in_root(&self) -> bool {
        self.vmxon_ptr.is_some()
    }

    pub fn count(&self, instr: Instr) -> usize {
        self.executed
            .iter()
            .filter(|(executed, _)| *executed == instr)
            .count()
    }

    /// The next execution of `instr` fails with `fail` and changes nothing.
    pub fn inject(&mut self, instr: Instr, fail: VmFail) {
        self.injected.push((instr, fail));
    }

    /// The next execution of `instr` raises `exception` (as A20M or SMX operation make VMXON #GP) and changes
    /// nothing.
    pub fn inject_fault(&mut self, instr: Instr, exception: Exception) {
        self.injected_faults.push((instr, exception));
    }

    /// Backs the physical page at `phys` with `page`.
    pub fn map(&mut self, phys: u64, page: *mut u8) {
        assert_eq!(phys & 0xFFF, 0);
        self.memory.insert(phys, page);
    }

    fn read_phys_u32(&self, phys: u64) -> u32 {
        let page = self
            .memory
            .get(&(phys & !0xFFF))
            .unwrap_or_else(|| panic!("fake: no memory at 0x{phys:x}"));
        let offset = (phys & 0xFFF) as usize;
        assert!(offset <= 4092);
        let mut bytes = [0u8; 4];
        for (index, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: mapped pages are 4096-byte `Page`s kept alive by the test (TestRegions).
            *byte = unsafe { page.add(offset + index).read_volatile() };
        }
        u32::from_le_bytes(bytes)
    }

    fn msr(&self, msr: u32) -> u64 {
        *self
            .msrs
            .get(&msr)
            .unwrap_or_else(|| panic!("#GP: RDMSR 0x{msr:x} does not exist"))
    }

    fn revision(&self) -> u32 {
        (self.msr(IA32_VMX_BASIC) & 0x7FFF_FFFF) as u32
    }

    fn address_width(&self) -> u8 {
        if self.msr(IA32_VMX_BASIC) & (1 << 48) != 0 {
            self.maxphyaddr.min(32)
        } else {
            self.maxphyaddr
        }
    }

    fn address_invalid(&self, phys: u64) -> bool {
        phys & 0xFFF != 0 || phys >> self.address_width() != 0
    }

    fn fixed_bits_violated(&self, cr0: u64, cr4: u64) -> bool {
        let bad = |value: u64, fixed0: u32, fixed1: u32| {
            (self.msr(fixed0) & !value != 0 && !self.quirk(Quirk::VmxonIgnoresFixed0))
                || (value & !self.msr(fixed1) != 0 && !self.quirk(Quirk::VmxonIgnoresFixed1))
        };
        bad(cr0, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1)
            || bad(cr4, IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1)
    }

    fn quirk(&self, quirk: Quirk) -> bool {
        self.quirk == Some(quirk)
    }

    /// VMfail(number): VMfailValid if there is a current VMCS, else VMfailInvalid (SDM vol. 3C 31.2).
    fn vmfail(&mut self, number: u32) -> InstrOutcome {
        if self.current_vmcs.is_some() {
            self.instruction_error = number;
            InstrOutcome::VmFail(VmFail::Valid(InstructionError(number)))
        } else {
            InstrOutcome::VmFail(VmFail::Invalid)
        }
    }

    /// The next fault injected for `instr`, taken (see [`FakeCpu::inject_fault`]).
    fn take_injected_fault(&mut self, instr: Instr) -> Option<Exception> {
        let index = self.injected_faults.iter().position(|(i, _)| *i == instr)?;
        Some(self.injected_faults.remove(index).1)
    }

    fn take_injected(&mut self, instr: Instr) -> Option<InstrOutcome> {
        let index = self
            .injected
            .iter()
            .position(|(injected, _)| *injected == instr)?;
        let (_, fail) = self.injected.remove(index);
        if let VmFail::Valid(error) = fail {
            self.instruction_error = error.0;
        }
        Some(InstrOutcome::VmFail(fail))
    }

    fn require_root(&self, instr: Instr) {
        assert!(self.in_root(), "#UD: {instr:?} outside VMX operation");
    }

    fn record(&mut self, instr: Instr, outcome: InstrOutcome) -> InstrOutcome {
        self.executed.push((instr, outcome));
        outcome
    }

    fn exec_vmxon(&mut self, phys: u64) -> InstrOutcome {
        let outcome = self.vmxon_semantics(phys);
        self.record(Instr::Vmxon, outcome)
    }

    fn vmxon_semantics(&mut self, phys: u64) -> InstrOutcome {
        self.vmxon_control_registers.push((self.cr0, self.cr4));
        if self.cr4 & CR4_VMXE == 0 {
            return InstrOutcome::Fault(Exception::UD);
        }
        if self.in_root() {
            return self.vmfail(InstructionError::VMXON_IN_VMX_ROOT.0);
        }
        let feature_control = self.feature_control();
        let flexible_cr4 = self.cr4 & !(self.msr(IA32_VMX_CR4_FIXED0) | CR4_PAE);
        if self.fixed_bits_violated(self.cr0, self.cr4)
            || (self.quirk(Quirk::VmxonFaultsOnFlexibleCr4Bits) && flexible_cr4 != 0)
            || (feature_control & LOCK == 0 && !self.quirk(Quirk::VmxonIgnoresFeatureControlLock))
            || feature_control & VMX_OUTSIDE_SMX == 0
        {
            return InstrOutcome::Fault(Exception::GP);
        }
        if let Some(exception) = self.take_injected_fault(Instr::Vmxon) {
            return InstrOutcome::Fault(exception);
        }
        if let Some(injected) = self.take_injected(Instr::Vmxon) {
            return injected;
        }
        let checked = if self.quirk(Quirk::VmxonIgnoresAlignment) {
            phys & !0xFFF
        } else {
            phys
        };
        if self.address_invalid(checked) {
            return InstrOutcome::VmFail(VmFail::Invalid);
        }
        // Bit 31 set makes the 32-bit value differ from the (31-bit) revision identifier.
        let found = self.read_phys_u32(checked);
        self.vmxon_revisions.push(found);
        if found != self.revision() {
            return InstrOutcome::VmFail(VmFail::Invalid);
        }
        self.vmxon_ptr = Some(phys);
        self.current_vmcs = None;
        InstrOutcome::Succeeded
    }

    fn vmclear_semantics(&mut self, phys: u64) -> InstrOutcome {
        self.require_root(Instr::Vmclear);
        if let Some(injected) = self.take_injected(Instr::Vmclear) {
            return injected;
        }
        if self.address_invalid(phys) {
            return self.vmfail(InstructionError::VMCLEAR_INVALID_ADDRESS.0);
        }
        if Some(phys) == self.vmxon_ptr {
            let number = if self.quirk(Quirk::VmclearReportsWrongError) {
                2
            } else {
                3
            };
            return self.vmfail(number);
        }
        assert!(
            self.memory.contains_key(&phys),
            "VMCLEAR would write unmapped memory at 0x{phys:x}"
        );
        if self.current_vmcs == Some(phys) {
            self.current_vmcs = None;
        }
        InstrOutcome::Succeeded
    }

    fn vmptrld_semantics(&mut self, phys: u64) -> InstrOutcome {
        self.require_root(Instr::Vmptrld);
        if let Some(injected) = self.take_injected(Instr::Vmptrld) {
            return injected;
        }
        if self.address_invalid(phys) {
            return self.vmfail(InstructionError::VMPTRLD_INVALID_ADDRESS.0);
        }
        if Some(phys) == self.vmxon_ptr && !self.quirk(Quirk::VmptrldAcceptsVmxonPointer) {
            return self.vmfail(InstructionError::VMPTRLD_VMXON_POINTER.0);
        }
        if self.read_phys_u32(phys) != self.revision() && !self.quirk(Quirk::VmptrldIgnoresRevision)
        {
            let outcome = self.vmfail(InstructionError::VMPTRLD_WRONG_REVISION.0);
            if self.quirk(Quirk::VmptrldFailureChangesCurrent) {
                self.current_vmcs = Some(phys);
            }
            return outcome;
        }
        self.current_vmcs = Some(phys);
        InstrOutcome::Succeeded
    }
}

fn into_result(outcome: InstrOutcome, what: &str) -> Result<(), VmFail> {
    match outcome {
        InstrOutcome::Succeeded => Ok(()),
        InstrOutcome::VmFail(fail) => Err(fail),
        InstrOutcome::Fault(exception) => panic!("{exception} from {what} with no fix-up"),
    }
}

impl VmxCpu for FakeCpu {
    fn cpuid(&self, leaf: u32, _subleaf: u32) -> CpuidResult {
        let mut result = CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: 0,
        };
        match leaf {
            1 => result.ecx = u32::from(self.vmx) << 5 | u32::from(self.smx) << 6,
            0x8000_0000 => result.eax = self.max_extended_leaf,
            0x8000_0008 if self.max_extended_leaf >= 0x8000_0008 => {
                result.eax = u32::from(self.maxphyaddr) | 48 << 8;
            }
            _ => {}
        }
        result
    }

    fn read_msr(&self, msr: u32) -> u64 {
        self.msr_reads.set(self.msr_reads.get() + 1);
        if msr == IA32_FEATURE_CONTROL {
            let value = self.feature_control();
            if let Some(rendezvous) = &self.read_rendezvous {
                rendezvous.arrive();
            }
            return value;
        }
        assert!(
            self.vmx || !(0x480..=0x493).contains(&msr),
            "#GP: RDMSR 0x{msr:x} without VMX"
        );
        self.msr(msr)
    }

    unsafe fn write_msr(&mut self, msr: u32, value: u64) {
        self.msr_writes.push((msr, value));
        assert_eq!(
            msr, IA32_FEATURE_CONTROL,
            "the VMX stage writes no other MSR"
        );
        let shared = Arc::clone(&self.feature_control);
        let mut feature_control = shared.lock().unwrap();
        assert_eq!(
            *feature_control & LOCK,
            0,
            "#GP: WRMSR to locked IA32_FEATURE_CONTROL"
        );
        assert!(
            self.smx || value & VMX_INSIDE_SMX == 0,
            "#GP: bit 1 set without SMX"
        );
        assert!(
            self.vmx || value & VMX_OUTSIDE_SMX == 0,
            "#GP: bit 2 set without VMX"
        );
        if self.fc_writes == FcWrites::Stored {
            *feature_control = value;
        }
    }

    fn read_cr0(&self) -> u64 {
        self.cr0
    }

    fn read_cr4(&self) -> u64 {
        self.cr4
    }

    unsafe fn write_cr0(&mut self, value: u64) {
        self.cr_writes.0 += 1;
        assert_eq!(
            (value ^ self.cr0) & (CR0_PE | CR0_PG),
            0,
            "#GP: CR0.PE/PG change in 64-bit mode"
        );
        assert!(
            !(self.in_root() && self.fixed_bits_violated(value, self.cr4)),
            "#GP: CR0 0x{value:x} in VMX"
        );
        if !self.cr0_ignores_writes {
            self.cr0 = value;
        }
    }

    unsafe fn write_cr4(&mut self, value: u64) {
        self.cr_writes.1 += 1;
        assert_eq!(
            (value ^ self.cr4) & (CR4_PAE | CR4_LA57),
            0,
            "#GP: CR4.PAE/LA57 change in 64-bit mode"
        );
        assert!(
            !(self.in_root() && self.fixed_bits_violated(self.cr0, value)),
            "#GP: CR4 0x{value:x} in VMX"
        );
        self.cr4 = value;
    }

    unsafe fn vmxon(&mut self, phys: u64) -> Result<(), VmFail> {
        let outcome = self.exec_vmxon(phys);
        into_result(outcome, "VMXON")
    }

    unsafe fn vmclear(&mut self, phys: u64) -> Result<(), VmFail> {
        let outcome = self.vmclear_semantics(phys);
        into_result(self.record(Instr::Vmclear, outcome), "VMCLEAR")
    }

    unsafe fn vmptrld(&mut self, phys: u64) -> Result<(), VmFail> {
        let outcome = self.vmptrld_semantics(phys);
        into_result(self.record(Instr::Vmptrld, outcome), "VMPTRLD")
    }

    unsafe fn vmptrst(&mut self) -> Result<u64, VmFail> {
        self.require_root(Instr::Vmptrst);
        let outcome = self
            .take_injected(Instr::Vmptrst)
            .unwrap_or(InstrOutcome::Succeeded);
        into_result(self.record(Instr::Vmptrst, outcome), "VMPTRST")?;
        Ok(self.vmptrst_lies.or(self.current_vmcs).unwrap_or(u64::MAX))
    }

    unsafe fn vmread(&mut self, field: u64) -> Result<u64, VmFail> {
        self.require_root(Instr::Vmread);
        let (outcome, value) = if self.current_vmcs.is_none() {
            (InstrOutcome::VmFail(VmFail::Invalid), 0)
        } else if field == VMCS_VM_INSTRUCTION_ERROR {
            (InstrOutcome::Succeeded, u64::from(self.instruction_error))
        } else {
            (
                self.vmfail(InstructionError::UNSUPPORTED_VMCS_COMPONENT.0),
                0,
            )
        };
        into_result(self.record(Instr::Vmread, outcome), "VMREAD").map(|()| value)
    }

    unsafe fn vmxoff(&mut self) -> Result<(), VmFail> {
        self.require_root(Instr::Vmxoff);
        let outcome = self.take_injected(Instr::Vmxoff).unwrap_or_else(|| {
            self.vmxon_ptr = None;
            self.current_vmcs = None;
            InstrOutcome::Succeeded
        });
        into_result(self.record(Instr::Vmxoff, outcome), "VMXOFF")
    }

    fn can_catch_faults(&self) -> bool {
        self.fault_fixup
    }

    unsafe fn vmxoff_probe(&mut self) -> InstrOutcome {
        if !self.in_root() && self.fault_fixup {
            return self.record(Instr::Vmxoff, InstrOutcome::Fault(Exception::UD));
        }
        // SAFETY: a fake; outside VMX operation without the fix-up this panics, like the machine would fault.
        unsafe { self.vmxoff() }.into()
    }

    unsafe fn vmclear_probe(&mut self, phys: u64) -> InstrOutcome {
        if !self.in_root() && self.fault_fixup {
            return self.record(Instr::Vmclear, InstrOutcome::Fault(Exception::UD));
        }
        // SAFETY: as `vmxoff_probe`.
        unsafe { self.vmclear(phys) }.into()
    }

    unsafe fn write_msr_probe(&mut self, msr: u32, value: u64) -> Result<(), Exception> {
        if let Some(exception) = self.take_injected_fault(Instr::Wrmsr) {
            self.record(Instr::Wrmsr, InstrOutcome::Fault(exception));
            return Err(exception);
        }
        let locked = msr == IA32_FEATURE_CONTROL
            && self.feature_control() & LOCK != 0
            && !self.quirk(Quirk::FeatureControlWritableAfterLock);
        if locked && self.fault_fixup {
            self.msr_writes.push((msr, value));
            self.record(Instr::Wrmsr, InstrOutcome::Fault(Exception::GP));
            return Err(Exception::GP);
        }
        if msr == IA32_FEATURE_CONTROL && !locked {
            // The quirk (or an unlocked MSR): the write is taken.
            self.msr_writes.push((msr, value));
            *self.feature_control.lock().unwrap() = value;
        } else {
            // SAFETY: a fake; a locked MSR without the fix-up panics there, as the machine would fault.
            unsafe { self.write_msr(msr, value) };
        }
        self.record(Instr::Wrmsr, InstrOutcome::Succeeded);
        Ok(())
    }

    unsafe fn write_cr0_probe(&mut self, value: u64) -> Result<(), Exception> {
        // SDM vol. 3A 2.5: bits 63:32 are reserved (#GP); NW = 1 with CD = 0 is an invalid combination (#GP).
        const CD: u64 = 1 << 30;
        const NW: u64 = 1 << 29;
        let refused = value >> 32 != 0
            || (value & NW != 0 && value & CD == 0)
            || (self.in_root() && self.fixed_bits_violated(value, self.cr4));
        if refused {
            assert!(
                self.fault_fixup,
                "#GP: MOV to CR0 0x{value:x} with no fix-up"
            );
            self.record(Instr::MovCr0, InstrOutcome::Fault(Exception::GP));
            return Err(Exception::GP);
        }
        // SAFETY: a fake (PE/PG changes still panic there).
        unsafe { self.write_cr0(value) };
        self.record(Instr::MovCr0, InstrOutcome::Succeeded);
        Ok(())
    }

    unsafe fn write_cr4_probe(&mut self, value: u64) -> Result<(), Exception> {
        let refused = value & !self.cr4_accepts != 0
            || (self.in_root() && self.fixed_bits_violated(self.cr0, value));
        if refused {
            assert!(
                self.fault_fixup,
                "#GP: MOV to CR4 0x{value:x} with no fix-up"
            );
            self.record(Instr::MovCr4, InstrOutcome::Fault(Exception::GP));
            return Err(Exception::GP);
        }
        // SAFETY: a fake (PAE/LA57 changes still panic there).
        unsafe { self.write_cr4(value) };
        self.record(Instr::MovCr4, InstrOutcome::Succeeded);
        Ok(())
    }

    unsafe fn vmxon_probe(&mut self, phys: u64) -> InstrOutcome {
        let outcome = self.exec_vmxon(phys);
        if !self.fault_fixup {
            into_result(outcome, "VMXON").ok();
        }
        outcome
    }
}

/// Two pages of fake memory mapped into a [`FakeCpu`] and wrapped as a [`RegionPair`], filled with junk so
/// tests see that preparation zeroes them, and a third page (the self-test's scratch VMCS) just below both.
pub struct TestRegions {
    pub pair: RegionPair,
    pub scratch: Region,
    pages: [*mut Page; 3],
}

impl TestRegions {
    pub const VMXON: u64 = 0x7F000;
    pub const VMCS: u64 = 0x7E000;
    /// Where [`TestRegions::new`] puts the scratch page.
    pub const SCRATCH: u64 = 0x7D000;

    pub fn new(cpu: &mut FakeCpu) -> Self {
        Self::at(cpu, Self::VMXON, Self::VMCS)
    }

    /// The scratch page is the page below the lower of the two.
    pub fn at(cpu: &mut FakeCpu, vmxon: u64, vmcs: u64) -> Self {
        let pages = [(); 3].map(|()| Box::into_raw(Page::new()));
        let scratch = vmxon.min(vmcs) - 0x1000;
        let mut regions = [vmxon, vmcs, scratch]
            .into_iter()
            .zip(pages)
            .map(|(phys, page)| {
                let bytes = page.cast::<u8>();
                // SAFETY: `page` is a live, exclusively owned 4096-byte allocation.
                unsafe { bytes.write_bytes(0xCC, 4096) };
                cpu.map(phys, bytes);
                // SAFETY: the page maps `phys` in the fake and lives until `TestRegions` is dropped, after the
                // regions (fields drop in declaration order) and after any use of the fake in the test.
                unsafe { Region::new(phys, NonNull::new(bytes).unwrap(), 4096) }
            });
        let pair = RegionPair {
            vmxon: regions.next().unwrap(),
            vmcs: regions.next().unwrap(),
        };
        let scratch = regions.next().unwrap();
        Self {
            pair,
            scratch,
            pages,
        }
    }

    /// The pair again, for a test that hands it to an owner ([`super::VmxCore`]); these pages stay alive until
    /// `self` is dropped, which the test does last.
    pub fn pair_for_owner(&self) -> RegionPair {
        let again = |region: &Region| {
            // SAFETY: the same live page and physical address as `region` (created in `at`); the test uses
            // only the new handle while both exist.
            unsafe { Region::new(region.phys(), region.virt(), 4096) }
        };
        RegionPair {
            vmxon: again(&self.pair.vmxon),
            vmcs: again(&self.pair.vmcs),
        }
    }
}

impl Drop for TestRegions {
    fn drop(&mut self) {
        for page in self.pages {
            // SAFETY: created by `Box::into_raw` in `at` and freed only here.
            drop(unsafe { Box::from_raw(page) });
        }
    }
}
