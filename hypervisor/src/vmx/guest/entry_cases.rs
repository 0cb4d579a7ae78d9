//! The self-test's VM-entry failure cases (`selftest=vmx`), run on each core's real VMCS before its good guest
//! launches (docs/vmx.md, "Entry failures in the self-test"), in the style of kvm-unit-tests' `vmx_tests.c`
//! (`test_vmx_controls`, `test_host_*`, `test_guest_*`): break one rule, try the entry, expect the exact failure,
//! put the field back.
//!
//! Each case names the SDM rule it breaks (vol. 3C 27.2 "Checks on VMX Controls and Host-State Area", 27.3
//! "Checking and Loading Guest State", 31.3 VMLAUNCH/VMRESUME) and what the processor must report: VMfailValid
//! with a VM-instruction error number (31.4), or a VM-entry failure VM exit (exit reason with bit 31, 27.8).
//! The same table is checked on the host against the fake VMCS and `check_vm_entry`, so the model and the
//! processor are held to the same answers.

use core::fmt;

use super::super::vmcs::{Check, ExitReason, Field, VmxCapabilities};

/// How a case breaks the VMCS or the launch protocol.
#[derive(Debug, Clone, Copy)]
pub enum Breaks {
    /// Write `field` with the bits `clear` names (for these capabilities) cleared; the model names the
    /// broken rule `check`.
    Field {
        field: Field,
        clear: fn(&VmxCapabilities) -> u64,
        check: Check,
    },
    /// VMRESUME while the launch state is clear.
    ResumeWhileClear,
    /// VMLAUNCH after the guest's first VM exit (launched).
    LaunchWhileLaunched,
}

/// What the processor must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// VMfailValid with this VM-instruction error number.
    VmFailValid(u32),
    /// A VM-entry failure: a VM exit whose reason has bit 31 set and this basic reason.
    EntryFailure(u16),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VmFailValid(n) => write!(f, "VMfailValid with error {n}"),
            Self::EntryFailure(basic) => write!(f, "a VM-entry failure with exit reason {basic}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EntryCase {
    pub name: &'static str,
    /// The rule, as the SDM states it, with its section.
    pub rule: &'static str,
    pub breaks: Breaks,
    pub expect: Expect,
}

/// The pin-based controls the capability MSR requires to be 1.
fn pin_default1(caps: &VmxCapabilities) -> u64 {
    u64::from(caps.effective_pinbased().must_be_one())
}

/// The broken value of a field case: `good` with the bits `clear` cleared, or None when none of them is set
/// in `good` (the capability MSRs leave nothing to break).
pub fn broken_value(good: u64, clear: u64) -> Option<u64> {
    let bits = good & clear;
    (bits != 0).then_some(good & !bits)
}

const CR4_VMXE: u64 = 1 << 13;
const RFLAGS_FIXED1: u64 = 1 << 1;

/// The cases, in the order they run (the last one needs the guest launched).
pub const ENTRY_CASES: [EntryCase; 5] = [
    EntryCase {
        name: "VMRESUME on a clear VMCS",
        rule: "31.3 VMRESUME: the launch state of the current VMCS must be launched",
        breaks: Breaks::ResumeWhileClear,
        expect: Expect::VmFailValid(5),
    },
    EntryCase {
        name: "VMLAUNCH with a required pin-based control clear",
        rule: "27.2.1.1: reserved bits in the pin-based VM-execution controls must be set as \
               IA32_VMX_(TRUE_)PINBASED_CTLS allows",
        breaks: Breaks::Field {
            field: Field::PIN_BASED_VM_EXEC_CONTROL,
            clear: pin_default1,
            check: Check::PinBasedAllowed,
        },
        expect: Expect::VmFailValid(7),
    },
    EntryCase {
        name: "VMLAUNCH with HOST_CR4.VMXE clear",
        rule:
            "27.2.2: the CR4 field must not set any bit to a value not supported in VMX operation \
               (IA32_VMX_CR4_FIXED0 has VMXE)",
        breaks: Breaks::Field {
            field: Field::HOST_CR4,
            clear: |_| CR4_VMXE,
            check: Check::HostCr4Fixed,
        },
        expect: Expect::VmFailValid(8),
    },
    EntryCase {
        name: "VMLAUNCH with guest RFLAGS bit 1 clear",
        rule: "27.3.1.4: RFLAGS bit 1 must be 1",
        breaks: Breaks::Field {
            field: Field::GUEST_RFLAGS,
            clear: |_| RFLAGS_FIXED1,
            check: Check::GuestRflagsReserved,
        },
        expect: Expect::EntryFailure(ExitReason::INVALID_GUEST_STATE),
    },
    EntryCase {
        name: "VMLAUNCH on a launched VMCS",
        rule: "31.3 VMLAUNCH: the launch state of the current VMCS must be clear",
        breaks: Breaks::LaunchWhileLaunched,
        expect: Expect::VmFailValid(4),
    },
];

impl EntryCase {
    /// The case that needs the VMCS launched (it runs after the guest's first exit).
    pub const fn after_launch(&self) -> bool {
        matches!(self.breaks, Breaks::LaunchWhileLaunched)
    }
}

/// What one case saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    VmFailValid(u32),
    VmFailInvalid,
    /// A VM exit with this exit reason (bit 31 included).
    Exit(u32),
    /// The case could not be set up (the capability MSRs leave nothing to break, or a VMWRITE failed).
    NotRun(&'static str),
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VmFailValid(n) => write!(f, "VMfailValid with error {n}"),
            Self::VmFailInvalid => f.write_str("VMfailInvalid"),
            Self::Exit(reason) => write!(f, "a VM exit with {}", ExitReason(*reason)),
            Self::NotRun(why) => write!(f, "not run: {why}"),
        }
    }
}

/// One case's result: `case="<name>" result=pass|fail|skip [reason="..."]`, the self-test's line format.
#[derive(Debug, Clone, Copy)]
pub struct CaseOutcome {
    pub case: &'static EntryCase,
    pub seen: Seen,
}

impl CaseOutcome {
    pub fn passed(&self) -> bool {
        match (self.case.expect, self.seen) {
            (Expect::VmFailValid(n), Seen::VmFailValid(m)) => n == m,
            (Expect::EntryFailure(basic), Seen::Exit(reason)) => {
                let reason = ExitReason(reason);
                reason.is_entry_failure() && reason.basic() == basic
            }
            _ => false,
        }
    }

    pub fn skipped(&self) -> bool {
        matches!(self.seen, Seen::NotRun(_))
    }
}

impl fmt::Display for CaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "case=\"{}\" ", self.case.name)?;
        if self.passed() {
            f.write_str("result=pass")
        } else if self.skipped() {
            write!(f, "result=skip reason=\"{}\"", self.seen)
        } else {
            write!(
                f,
                "result=fail reason=\"expected {}, got {} ({})\"",
                self.case.expect, self.seen, self.case.rule
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::vmcs::checks::check_vm_entry;
    use crate::vmx::vmcs::controls::ControlPolicy;
    use crate::vmx::vmcs::fixtures::{built_vmcs, haswell_caps, penryn_caps};
    use crate::vmx::vmcs::{InstructionError, VmcsAccess};

    /// The fake VMCS and the SDM model give, for every field case, exactly the failure the case expects the
    /// processor to give; and the good VMCS passes.
    #[test]
    fn the_model_agrees_with_every_field_case() {
        for caps in [haswell_caps(), penryn_caps()] {
            let (good, _) = built_vmcs(&caps, &ControlPolicy::TEST_GUEST);
            check_vm_entry(&good, &caps).unwrap();
            for case in ENTRY_CASES.iter() {
                let Breaks::Field {
                    field,
                    clear,
                    check,
                } = case.breaks
                else {
                    continue;
                };
                let (mut vmcs, _) = built_vmcs(&caps, &ControlPolicy::TEST_GUEST);
                let good = vmcs.vmread(field).unwrap();
                let value = broken_value(good, clear(&caps)).expect(case.name);
                // Exactly the named bits, each set before, are cleared.
                assert_eq!(good ^ value, clear(&caps), "{}", case.name);
                assert_eq!(value & clear(&caps), 0, "{}", case.name);
                vmcs.vmwrite(field, value).unwrap();
                let error = check_vm_entry(&vmcs, &caps).expect_err(case.name);
                let violation = error.violation().expect(case.name);
                assert_eq!(
                    (violation.check, violation.field),
                    (check, field),
                    "{}: {error}",
                    case.name
                );
                match case.expect {
                    Expect::VmFailValid(n) => assert_eq!(
                        error.instruction_error(),
                        Some(InstructionError(n)),
                        "{}: {error}",
                        case.name
                    ),
                    Expect::EntryFailure(basic) => assert_eq!(
                        error.exit_reason().map(|r| r.basic()),
                        Some(basic),
                        "{}: {error}",
                        case.name
                    ),
                }
            }
        }
    }

    #[test]
    fn a_field_case_clears_only_bits_that_are_set() {
        assert_eq!(broken_value(0x2020, 0x2000), Some(0x20));
        assert_eq!(broken_value(0x16, 0x16), Some(0));
        assert_eq!(broken_value(0x16, 0x3), Some(0x14));
        assert_eq!(broken_value(0x20, 0x2000), None, "nothing to break");
        assert_eq!(broken_value(0, 0), None);
        assert_eq!(pin_default1(&haswell_caps()), 0x16);
    }

    #[test]
    fn outcomes_pass_only_on_the_exact_answer() {
        let resume = &ENTRY_CASES[0];
        let guest = &ENTRY_CASES[3];
        let ok = |case, seen| CaseOutcome { case, seen };
        assert!(ok(resume, Seen::VmFailValid(5)).passed());
        assert!(!ok(resume, Seen::VmFailValid(4)).passed());
        assert!(!ok(resume, Seen::VmFailInvalid).passed());
        assert!(ok(guest, Seen::Exit((1 << 31) | 33)).passed());
        assert!(!ok(guest, Seen::Exit(33)).passed(), "bit 31 is required");
        assert!(!ok(guest, Seen::Exit((1 << 31) | 34)).passed());
        assert!(!ok(guest, Seen::VmFailValid(8)).passed());
        assert_eq!(
            ok(resume, Seen::VmFailValid(5)).to_string(),
            "case=\"VMRESUME on a clear VMCS\" result=pass"
        );
        assert_eq!(
            ok(guest, Seen::VmFailValid(8)).to_string(),
            "case=\"VMLAUNCH with guest RFLAGS bit 1 clear\" result=fail reason=\"expected a VM-entry failure \
             with exit reason 33, got VMfailValid with error 8 (27.3.1.4: RFLAGS bit 1 must be 1)\""
        );
        let skipped = ok(&ENTRY_CASES[1], Seen::NotRun("nothing to break"));
        assert!(skipped.skipped() && !skipped.passed());
        assert!(skipped
            .to_string()
            .ends_with("result=skip reason=\"not run: nothing to break\""));
    }

    #[test]
    fn every_case_has_a_distinct_name_and_the_launched_case_is_last() {
        for (i, a) in ENTRY_CASES.iter().enumerate() {
            for b in &ENTRY_CASES[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
        assert!(ENTRY_CASES.last().is_some_and(EntryCase::after_launch));
        assert!(ENTRY_CASES[..4].iter().all(|c| !c.after_launch()));
    }
}
