//! What the hypervisor does with each VM exit of the test guest, and what counts as the guest passing.
//!
//! The guest's program (`vmx::vm_entry`, docs/vmx.md "The test guest") is fixed: optionally `loops` timed CPUID
//! exits, CPUID leaf [`LEAF_APIC_ID`], CPUID leaf [`LEAF_SIGNATURE`], a VMCALL [`VMCALL_REPORT`] with what it saw,
//! HLT, and a final VMCALL [`VMCALL_DONE`]. [`GuestRun::on_exit`] decides per exit (SDM vol. 3C 28.2 "Recording
//! VM-Exit Information", appendix C for the reasons): CPUID (10) is answered and RIP advanced past it by the
//! VM-exit instruction length; HLT (12) and VMCALL (18) likewise; anything else ends the guest with a
//! [`GuestFailure`] naming the exit. The loop is bounded by [`GuestRun::max_exits`], so a guest that exits
//! forever (an interrupt that stays pending, say) ends too.

use core::fmt;

use super::super::vmcs::ExitReason;
use crate::arch::cpuid::CpuidResult;

/// The hypervisor's CPUID leaves (the range 0x40000000-0x4FFFFFFF is reserved for hypervisors, SDM vol. 2A
/// CPUID: "invalid" leaves above the maximum are otherwise answered as the highest basic leaf).
pub const LEAF_SIGNATURE: u32 = 0x4000_0000;
/// EAX = the APIC id of the core the guest runs on.
pub const LEAF_APIC_ID: u32 = 0x4000_0001;
/// The vendor signature in EBX, ECX, EDX of [`LEAF_SIGNATURE`] (EAX: the highest hypervisor leaf).
pub const SIGNATURE: [u8; 12] = *b"RustHvTestVM";

/// VMCALL numbers (RAX).
pub const VMCALL_REPORT: u64 = 1;
pub const VMCALL_DONE: u64 = 2;

/// The general-purpose registers of the guest, saved on a VM exit and loaded before a VM entry by the
/// assembly entry (`vmx::vm_entry`, which depends on this layout: RSP and RIP are in the VMCS).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// Not a guest register: the HOST_RSP last written, kept here by the assembly entry (0: none yet).
    pub host_rsp: u64,
}

/// What the processor recorded for one VM exit (the exit-information fields, SDM vol. 3C 25.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitInfo {
    pub reason: u32,
    pub qualification: u64,
    pub instruction_length: u32,
    pub guest_rip: u64,
    /// For EPT violations and misconfigurations.
    pub guest_physical: u64,
    /// VM-exit interruption information (exception or NMI exits).
    pub interruption_info: u32,
}

impl ExitInfo {
    pub const fn reason(&self) -> ExitReason {
        ExitReason(self.reason)
    }
}

/// What the guest reported in its VMCALL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestReport {
    pub signature: [u8; 12],
    pub apic_id: u32,
    /// The timed CPUID round trips and the TSC cycles they took (the guest's RDTSC), and the cycles of the same
    /// loop with a NOP in place of the CPUID (the loop's own cost).
    pub loops: u64,
    pub cycles: u64,
    pub baseline_cycles: u64,
}

/// Why a core's guest did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFailure {
    /// A VM-entry failure (exit reason bit 31; SDM vol. 3C 27.8).
    EntryFailed {
        reason: ExitReason,
        qualification: u64,
    },
    TripleFault {
        rip: u64,
    },
    EptViolation {
        gpa: u64,
        qualification: u64,
        rip: u64,
    },
    EptMisconfiguration {
        gpa: u64,
        rip: u64,
    },
    /// An exit the test guest never causes.
    Unexpected {
        reason: ExitReason,
        qualification: u64,
        rip: u64,
    },
    /// A VMCALL number the program does not use.
    UnknownVmcall {
        rax: u64,
        rip: u64,
    },
    /// The report's signature or APIC id is not what the hypervisor answered.
    WrongSignature {
        seen: [u8; 12],
    },
    WrongApicId {
        expected: u32,
        seen: u32,
    },
    /// The final VMCALL came before the report, or without the HLT.
    OutOfOrder {
        what: &'static str,
    },
    TooManyExits {
        limit: u32,
    },
    /// An NMI arrived while the guest ran (NMI exiting; the only NMI the kernel sends is the teardown's).
    Nmi,
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |r: ExitReason| r.name().unwrap_or("reserved");
        match *self {
            Self::EntryFailed { reason, qualification } => write!(
                f,
                "VM-entry failure: exit reason {} ({}) with bit 31, qualification 0x{qualification:x}",
                reason.basic(),
                name(reason)
            ),
            Self::TripleFault { rip } => write!(f, "triple fault in the guest at rip=0x{rip:x}"),
            Self::EptViolation { gpa, qualification, rip } => write!(
                f,
                "EPT violation at guest-physical 0x{gpa:x} (qualification 0x{qualification:x}) rip=0x{rip:x}"
            ),
            Self::EptMisconfiguration { gpa, rip } => {
                write!(f, "EPT misconfiguration at guest-physical 0x{gpa:x} rip=0x{rip:x}")
            }
            Self::Unexpected { reason, qualification, rip } => write!(
                f,
                "unexpected VM exit: reason {} ({}) qualification 0x{qualification:x} rip=0x{rip:x}",
                reason.basic(),
                name(reason)
            ),
            Self::UnknownVmcall { rax, rip } => write!(f, "unknown VMCALL rax={rax} rip=0x{rip:x}"),
            Self::WrongSignature { seen } => write!(
                f,
                "the guest saw signature '{}', not '{}'",
                core::str::from_utf8(&seen).unwrap_or("(not text)"),
                core::str::from_utf8(&SIGNATURE).unwrap_or("")
            ),
            Self::WrongApicId { expected, seen } => {
                write!(f, "the guest saw apic_id={seen}, not {expected}")
            }
            Self::OutOfOrder { what } => write!(f, "the guest's program ran out of order: {what}"),
            Self::TooManyExits { limit } => write!(f, "more than {limit} VM exits"),
            Self::Nmi => f.write_str("an NMI arrived while the guest ran (the run's teardown)"),
        }
    }
}

/// Exits per reason the test guest causes; `other` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitCounts {
    pub cpuid: u32,
    pub hlt: u32,
    pub vmcall: u32,
    pub other: u32,
}

impl ExitCounts {
    pub const fn total(&self) -> u32 {
        self.cpuid + self.hlt + self.vmcall + self.other
    }
}

/// `exits=<n> cpuid=<n> hlt=<n> vmcall=<n> other=<n>`.
impl fmt::Display for ExitCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exits={} cpuid={} hlt={} vmcall={} other={}",
            self.total(),
            self.cpuid,
            self.hlt,
            self.vmcall,
            self.other
        )
    }
}

/// VM-exit interruption information bits 10:8, the interruption type, and type 2, NMI (SDM vol. 3C 25.9.2).
const INTERRUPTION_TYPE: u32 = 7 << 8;
const NMI_TYPE: u32 = 2 << 8;

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write GUEST_RIP = `rip` and VMRESUME.
    Resume { rip: u64 },
    /// The guest finished its program.
    Finished,
}

/// One core's guest run: the expectations and what happened so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRun {
    pub apic_id: u32,
    /// Timed CPUID round trips the guest is asked to make (its RCX at launch).
    pub loops: u64,
    pub counts: ExitCounts,
    pub report: Option<GuestReport>,
    /// Exits left before the run is ended as [`GuestFailure::TooManyExits`] (counted down on the exit path).
    budget: u32,
}

/// Exits the program makes besides its timed loop: two CPUIDs, two VMCALLs, one HLT, with room to spare.
const PROGRAM_EXITS: u32 = 16;

impl GuestRun {
    pub const fn new(apic_id: u32, loops: u64) -> Self {
        Self {
            apic_id,
            loops,
            counts: ExitCounts {
                cpuid: 0,
                hlt: 0,
                vmcall: 0,
                other: 0,
            },
            report: None,
            budget: Self::limit(loops),
        }
    }

    const fn limit(loops: u64) -> u32 {
        let loops = if loops > u32::MAX as u64 {
            u32::MAX
        } else {
            loops as u32
        };
        PROGRAM_EXITS.saturating_add(loops)
    }

    /// The bound on the exits of one run.
    pub const fn max_exits(&self) -> u32 {
        Self::limit(self.loops)
    }

    /// The hypervisor's answer to CPUID in the guest; any other leaf is the processor's own (`host`). On the
    /// VM-exit path: inlined (a call here costs the round trip about 8 instructions, docs/performance.md).
    #[inline]
    pub fn cpuid(
        &self,
        leaf: u32,
        subleaf: u32,
        host: impl Fn(u32, u32) -> CpuidResult,
    ) -> CpuidResult {
        let word = |i: usize| {
            u32::from_le_bytes([
                SIGNATURE[i],
                SIGNATURE[i + 1],
                SIGNATURE[i + 2],
                SIGNATURE[i + 3],
            ])
        };
        match leaf {
            LEAF_SIGNATURE => CpuidResult {
                eax: LEAF_APIC_ID,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            },
            LEAF_APIC_ID => CpuidResult {
                eax: self.apic_id,
                ebx: 0,
                ecx: 0,
                edx: 0,
            },
            _ => host(leaf, subleaf),
        }
    }

    /// Handles one VM exit: updates `regs` (the guest's registers, saved by the exit entry) and the counts.
    #[inline]
    pub fn on_exit(
        &mut self,
        exit: &ExitInfo,
        regs: &mut GuestRegs,
        host: impl Fn(u32, u32) -> CpuidResult,
    ) -> Result<Step, GuestFailure> {
        let reason = exit.reason();
        let next = Step::Resume {
            rip: exit
                .guest_rip
                .wrapping_add(u64::from(exit.instruction_length)),
        };
        if reason.is_entry_failure() {
            self.counts.other += 1;
            return Err(GuestFailure::EntryFailed {
                reason,
                qualification: exit.qualification,
            });
        }
        let Some(left) = self.budget.checked_sub(1) else {
            return Err(GuestFailure::TooManyExits {
                limit: self.max_exits(),
            });
        };
        self.budget = left;
        let rip = exit.guest_rip;
        match reason.basic() {
            ExitReason::CPUID => {
                self.counts.cpuid += 1;
                let answer = self.cpuid(regs.rax as u32, regs.rcx as u32, host);
                regs.rax = u64::from(answer.eax);
                regs.rbx = u64::from(answer.ebx);
                regs.rcx = u64::from(answer.ecx);
                regs.rdx = u64::from(answer.edx);
                Ok(next)
            }
            ExitReason::HLT => {
                self.counts.hlt += 1;
                Ok(next)
            }
            ExitReason::VMCALL => {
                self.counts.vmcall += 1;
                match regs.rax {
                    VMCALL_REPORT => self.take_report(regs).map(|()| next),
                    VMCALL_DONE => self.finish(),
                    rax => Err(GuestFailure::UnknownVmcall { rax, rip }),
                }
            }
            basic => {
                self.counts.other += 1;
                Err(match basic {
                    ExitReason::EXCEPTION_OR_NMI
                        if exit.interruption_info & INTERRUPTION_TYPE == NMI_TYPE =>
                    {
                        GuestFailure::Nmi
                    }
                    ExitReason::TRIPLE_FAULT => GuestFailure::TripleFault { rip },
                    ExitReason::EPT_VIOLATION => GuestFailure::EptViolation {
                        gpa: exit.guest_physical,
                        qualification: exit.qualification,
                        rip,
                    },
                    ExitReason::EPT_MISCONFIGURATION => GuestFailure::EptMisconfiguration {
                        gpa: exit.guest_physical,
                        rip,
                    },
                    _ => GuestFailure::Unexpected {
                        reason,
                        qualification: exit.qualification,
                        rip,
                    },
                })
            }
        }
    }

    fn take_report(&mut self, regs: &GuestRegs) -> Result<(), GuestFailure> {
        if self.report.is_some() {
            return Err(GuestFailure::OutOfOrder {
                what: "a second report",
            });
        }
        let mut signature = [0u8; 12];
        for (chunk, reg) in signature.chunks_mut(4).zip([regs.rbx, regs.rcx, regs.rdx]) {
            chunk.copy_from_slice(&(reg as u32).to_le_bytes());
        }
        let report = GuestReport {
            signature,
            apic_id: regs.rsi as u32,
            loops: regs.r8,
            cycles: regs.rdi,
            baseline_cycles: regs.r11,
        };
        self.report = Some(report);
        if signature != SIGNATURE {
            return Err(GuestFailure::WrongSignature { seen: signature });
        }
        if report.apic_id != self.apic_id {
            return Err(GuestFailure::WrongApicId {
                expected: self.apic_id,
                seen: report.apic_id,
            });
        }
        Ok(())
    }

    fn finish(&self) -> Result<Step, GuestFailure> {
        if self.report.is_none() {
            return Err(GuestFailure::OutOfOrder {
                what: "done before the report",
            });
        }
        if self.counts.hlt != 1 {
            return Err(GuestFailure::OutOfOrder {
                what: "done without exactly one HLT",
            });
        }
        Ok(Step::Finished)
    }

    /// TSC cycles per timed round trip (VM exit, the hypervisor's handling, VM entry, the CPUID's own slot),
    /// the loop's own cost taken out, when the guest made any.
    pub fn cycles_per_round_trip(&self) -> Option<u64> {
        let report = self.report?;
        (report.loops > 0)
            .then(|| report.cycles.saturating_sub(report.baseline_cycles) / report.loops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(leaf: u32, _subleaf: u32) -> CpuidResult {
        CpuidResult {
            eax: leaf ^ 0x5555,
            ebx: 1,
            ecx: 2,
            edx: 3,
        }
    }

    fn exit(basic: u16, rip: u64, len: u32) -> ExitInfo {
        ExitInfo {
            reason: u32::from(basic),
            instruction_length: len,
            guest_rip: rip,
            ..ExitInfo::default()
        }
    }

    /// The guest program as the processor would run it against `run`, with `tamper` applied to the registers
    /// before each exit is handled (what a broken guest or processor would change).
    fn play(
        run: &mut GuestRun,
        mut tamper: impl FnMut(u16, &mut GuestRegs),
    ) -> Result<(), GuestFailure> {
        let mut regs = GuestRegs::default();
        let mut rip = 0x1000;
        let loops = run.loops;
        let mut step = |basic: u16, len: u32, regs: &mut GuestRegs, rip: &mut u64| {
            tamper(basic, regs);
            match run.on_exit(&exit(basic, *rip, len), regs, host)? {
                Step::Resume { rip: next } => {
                    assert_eq!(next, *rip + u64::from(len));
                    *rip = next;
                    Ok(false)
                }
                Step::Finished => Ok(true),
            }
        };
        for _ in 0..loops {
            regs.rax = u64::from(LEAF_SIGNATURE);
            step(ExitReason::CPUID, 2, &mut regs, &mut rip)?;
        }
        regs.rax = u64::from(LEAF_APIC_ID);
        step(ExitReason::CPUID, 2, &mut regs, &mut rip)?;
        let apic = regs.rax;
        regs.rax = u64::from(LEAF_SIGNATURE);
        regs.rcx = 0;
        step(ExitReason::CPUID, 2, &mut regs, &mut rip)?;
        regs.rax = VMCALL_REPORT;
        regs.rsi = apic;
        regs.r8 = loops;
        regs.rdi = 1000 * loops;
        regs.r11 = 10 * loops;
        step(ExitReason::VMCALL, 3, &mut regs, &mut rip)?;
        step(ExitReason::HLT, 1, &mut regs, &mut rip)?;
        regs.rax = VMCALL_DONE;
        assert!(step(ExitReason::VMCALL, 3, &mut regs, &mut rip)?);
        Ok(())
    }

    #[test]
    fn the_program_passes_and_every_exit_is_counted() {
        let mut run = GuestRun::new(7, 0);
        play(&mut run, |_, _| {}).unwrap();
        assert_eq!(
            run.counts,
            ExitCounts {
                cpuid: 2,
                hlt: 1,
                vmcall: 2,
                other: 0
            }
        );
        assert_eq!(
            run.counts.to_string(),
            "exits=5 cpuid=2 hlt=1 vmcall=2 other=0"
        );
        let report = run.report.unwrap();
        assert_eq!((report.signature, report.apic_id), (SIGNATURE, 7));
        assert_eq!(run.cycles_per_round_trip(), None);
    }

    #[test]
    fn the_timed_loop_reports_cycles_per_round_trip() {
        let mut run = GuestRun::new(0x1_0000, 50);
        play(&mut run, |_, _| {}).unwrap();
        assert_eq!(run.counts.cpuid, 52);
        assert_eq!(run.cycles_per_round_trip(), Some(990));
    }

    #[test]
    fn cpuid_answers_the_signature_the_apic_id_and_passes_other_leaves_through() {
        let run = GuestRun::new(300, 0);
        let sig = run.cpuid(LEAF_SIGNATURE, 0, host);
        assert_eq!(sig.eax, LEAF_APIC_ID, "EAX: the highest hypervisor leaf");
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&sig.ebx.to_le_bytes());
        bytes[4..8].copy_from_slice(&sig.ecx.to_le_bytes());
        bytes[8..].copy_from_slice(&sig.edx.to_le_bytes());
        assert_eq!(&bytes, b"RustHvTestVM");
        assert_eq!(run.cpuid(LEAF_APIC_ID, 0, host).eax, 300);
        assert_eq!(run.cpuid(1, 0, host), host(1, 0));
    }

    #[test]
    fn a_wrong_report_fails_with_what_the_guest_saw() {
        let mut run = GuestRun::new(3, 0);
        let err = play(&mut run, |basic, regs| {
            if basic == ExitReason::VMCALL && regs.rax == VMCALL_REPORT {
                regs.rsi = 4;
            }
        });
        assert_eq!(
            err,
            Err(GuestFailure::WrongApicId {
                expected: 3,
                seen: 4
            })
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "the guest saw apic_id=4, not 3"
        );

        let mut run = GuestRun::new(3, 0);
        let err = play(&mut run, |basic, regs| {
            if basic == ExitReason::VMCALL && regs.rax == VMCALL_REPORT {
                regs.rbx ^= 0x20;
            }
        });
        assert!(
            matches!(err, Err(GuestFailure::WrongSignature { .. })),
            "{err:?}"
        );
        assert!(err.unwrap_err().to_string().contains("'rustHvTestVM'"));
    }

    #[test]
    fn done_before_the_report_or_without_hlt_is_out_of_order() {
        let mut run = GuestRun::new(0, 0);
        let mut regs = GuestRegs {
            rax: VMCALL_DONE,
            ..GuestRegs::default()
        };
        let err = run.on_exit(&exit(ExitReason::VMCALL, 0, 3), &mut regs, host);
        assert_eq!(
            err,
            Err(GuestFailure::OutOfOrder {
                what: "done before the report"
            })
        );
        let mut run = GuestRun::new(0, 0);
        let mut regs = GuestRegs {
            rax: u64::from(LEAF_SIGNATURE),
            ..GuestRegs::default()
        };
        run.on_exit(&exit(ExitReason::CPUID, 0, 2), &mut regs, host)
            .unwrap();
        regs.rax = VMCALL_REPORT;
        regs.rsi = 0;
        run.on_exit(&exit(ExitReason::VMCALL, 2, 3), &mut regs, host)
            .unwrap();
        regs.rax = VMCALL_DONE;
        assert!(matches!(
            run.on_exit(&exit(ExitReason::VMCALL, 5, 3), &mut regs, host),
            Err(GuestFailure::OutOfOrder { .. })
        ));
    }

    #[test]
    fn every_other_exit_ends_the_guest_with_its_name() {
        let cases = [
            (
                ExitInfo {
                    reason: 2,
                    guest_rip: 0x10,
                    ..ExitInfo::default()
                },
                "triple fault in the guest at rip=0x10",
            ),
            (
                ExitInfo {
                    reason: 48,
                    qualification: 0x181,
                    guest_physical: 0xdead000,
                    guest_rip: 0x20,
                    ..ExitInfo::default()
                },
                "EPT violation at guest-physical 0xdead000 (qualification 0x181) rip=0x20",
            ),
            (
                ExitInfo {
                    reason: 49,
                    guest_physical: 0x5000,
                    ..ExitInfo::default()
                },
                "EPT misconfiguration at guest-physical 0x5000 rip=0x0",
            ),
            (
                ExitInfo {
                    reason: 30,
                    qualification: 0x3f80008,
                    guest_rip: 0x30,
                    ..ExitInfo::default()
                },
                "unexpected VM exit: reason 30 (I/O instruction) qualification 0x3f80008 rip=0x30",
            ),
            (
                ExitInfo {
                    reason: (1 << 31) | 33,
                    qualification: 0,
                    ..ExitInfo::default()
                },
                "VM-entry failure: exit reason 33 (VM-entry failure due to invalid guest state) with bit 31, \
                 qualification 0x0",
            ),
        ];
        for (info, text) in cases {
            let mut run = GuestRun::new(0, 0);
            let err = run
                .on_exit(&info, &mut GuestRegs::default(), host)
                .unwrap_err();
            assert_eq!(err.to_string(), text);
            assert_eq!(run.counts.other, 1);
        }
        // Valid, type 2 (NMI) in bits 10:8, vector 2 (SDM vol. 3C 25.9.2).
        let nmi = ExitInfo {
            reason: 0,
            interruption_info: 0x8000_0202,
            ..ExitInfo::default()
        };
        let mut run = GuestRun::new(0, 0);
        assert_eq!(
            run.on_exit(&nmi, &mut GuestRegs::default(), host),
            Err(GuestFailure::Nmi)
        );
        assert_eq!(run.counts.total(), 1);
        // A hardware exception (type 3, #UD) is not an NMI.
        let ud = ExitInfo {
            interruption_info: 0x8000_0306,
            ..nmi
        };
        let mut run = GuestRun::new(0, 0);
        assert!(matches!(
            run.on_exit(&ud, &mut GuestRegs::default(), host),
            Err(GuestFailure::Unexpected { .. })
        ));
        let mut run = GuestRun::new(0, 0);
        let mut regs = GuestRegs {
            rax: 99,
            ..GuestRegs::default()
        };
        assert_eq!(
            run.on_exit(&exit(ExitReason::VMCALL, 8, 3), &mut regs, host),
            Err(GuestFailure::UnknownVmcall { rax: 99, rip: 8 })
        );
    }

    #[test]
    fn the_exit_budget_follows_the_loops_and_saturates() {
        assert_eq!(GuestRun::new(0, 0).max_exits(), 16);
        assert_eq!(GuestRun::new(0, 1000).max_exits(), 1016);
        assert_eq!(GuestRun::new(0, 1 << 32).max_exits(), u32::MAX);
        assert_eq!(GuestRun::new(0, u64::MAX).max_exits(), u32::MAX);
        let counts = ExitCounts {
            cpuid: 1,
            hlt: 2,
            vmcall: 3,
            other: 4,
        };
        assert_eq!(counts.total(), 10);
    }

    #[test]
    fn a_guest_that_keeps_exiting_is_ended() {
        let mut run = GuestRun::new(0, 0);
        let mut regs = GuestRegs::default();
        for _ in 0..run.max_exits() {
            run.on_exit(&exit(ExitReason::HLT, 0, 1), &mut regs, host)
                .unwrap();
        }
        assert_eq!(
            run.on_exit(&exit(ExitReason::HLT, 0, 1), &mut regs, host),
            Err(GuestFailure::TooManyExits { limit: 16 })
        );
    }
}
