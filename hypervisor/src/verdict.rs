//! How the run's verdict is decided: the VMX stage's judgement over the online cores, and how the SMP, VMX
//! and per-core fault outcomes combine into the summary's `verdict=` and `reason=` (docs/serial-log.md).
//! Pure functions over counts, tested on the host; `stages::vmx` and `stages::bsp` gather the counts.

use crate::exit::{Reason, Verdict};

/// What the VMX stage counted over the online cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxCounts {
    /// Cores online (the BSP included).
    pub online: u32,
    /// Cores that entered VMX root operation.
    pub vmx_root: u32,
    /// Cores whose CPUID says no VMX.
    pub unsupported: u32,
    /// Cores whose IA32_FEATURE_CONTROL is locked with VMX outside SMX off.
    pub firmware_disabled: u32,
    /// Failed self-test cases, over all cores.
    pub selftest_fail: u32,
    /// Cores whose test guest passed; None with `guest=off`.
    pub guests: Option<u32>,
}

/// The VMX stage's part of the verdict: `None` when every online core is in VMX root, ran its test guest
/// (unless `guest=off`) and no self-test case failed. A failed self-test case fails the run; otherwise a core
/// outside VMX root degrades it, with the first reason that applies: unsupported, then disabled by firmware,
/// then failed; and with every core in root, a core whose guest did not pass degrades it (`guest_failed`).
pub fn judge_vmx(c: VmxCounts) -> Option<(Verdict, Reason)> {
    if c.selftest_fail > 0 {
        return Some((Verdict::Fail, Reason::SelftestFailed));
    }
    if c.vmx_root == c.online {
        return match c.guests {
            Some(passed) if passed < c.vmx_root => Some((Verdict::Degraded, Reason::GuestFailed)),
            _ => None,
        };
    }
    let reason = if c.unsupported > 0 {
        Reason::VmxUnsupported
    } else if c.firmware_disabled > 0 {
        Reason::VmxDisabledByFirmware
    } else {
        Reason::VmxFailed
    };
    Some((Verdict::Degraded, reason))
}

/// The summary's verdict and reason from the stages' outcomes:
/// - the SMP stage: no usable ACPI (`acpi_error`) before an AP that did not come up (`ap_timeout`),
///   both `degraded`;
/// - the VMX stage ([`judge_vmx`], `None` if VMX is off or all went well): its `fail` always wins, its
///   `degraded` only over an `ok` SMP outcome (an SMP problem keeps its reason);
/// - a core that stopped on a fault (`ap_fatal`) fails the run with its reason, whatever the rest says.
pub fn combine(
    acpi_ok: bool,
    aps_failed: usize,
    vmx: Option<(Verdict, Reason)>,
    ap_fatal: Option<Reason>,
) -> (Verdict, Reason) {
    if let Some(r) = ap_fatal {
        return (Verdict::Fail, r);
    }
    let smp = if !acpi_ok {
        (Verdict::Degraded, Reason::AcpiError)
    } else if aps_failed > 0 {
        (Verdict::Degraded, Reason::ApTimeout)
    } else {
        (Verdict::Ok, Reason::None)
    };
    match vmx {
        Some((v, r)) if v == Verdict::Fail || smp.0 == Verdict::Ok => (v, r),
        _ => smp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(online: u32, vmx_root: u32) -> VmxCounts {
        VmxCounts {
            online,
            vmx_root,
            ..VmxCounts::default()
        }
    }

    #[test]
    fn every_core_in_root_is_no_verdict() {
        assert_eq!(judge_vmx(counts(1, 1)), None);
        assert_eq!(judge_vmx(counts(15, 15)), None);
        // Counts of cores that did not make it do not matter when all are in root.
        let c = VmxCounts {
            unsupported: 0,
            firmware_disabled: 0,
            ..counts(4, 4)
        };
        assert_eq!(judge_vmx(c), None);
    }

    #[test]
    fn a_core_in_root_whose_guest_did_not_pass_degrades_the_run() {
        let all = |guests| VmxCounts {
            guests,
            ..counts(4, 4)
        };
        assert_eq!(judge_vmx(all(Some(4))), None);
        assert_eq!(judge_vmx(all(None)), None, "guest=off judges as before");
        assert_eq!(
            judge_vmx(all(Some(3))),
            Some((Verdict::Degraded, Reason::GuestFailed))
        );
        assert_eq!(
            judge_vmx(all(Some(0))),
            Some((Verdict::Degraded, Reason::GuestFailed))
        );
        // A core outside root keeps its own reason.
        let partial = VmxCounts {
            guests: Some(2),
            ..counts(4, 3)
        };
        assert_eq!(
            judge_vmx(partial),
            Some((Verdict::Degraded, Reason::VmxFailed))
        );
        // A failed self-test still fails the run.
        let selftest = VmxCounts {
            selftest_fail: 1,
            ..all(Some(4))
        };
        assert_eq!(
            judge_vmx(selftest),
            Some((Verdict::Fail, Reason::SelftestFailed))
        );
    }

    #[test]
    fn a_core_outside_root_degrades_with_the_first_reason_that_applies() {
        assert_eq!(
            judge_vmx(counts(4, 3)),
            Some((Verdict::Degraded, Reason::VmxFailed))
        );
        assert_eq!(
            judge_vmx(counts(4, 0)),
            Some((Verdict::Degraded, Reason::VmxFailed))
        );
        let firmware = VmxCounts {
            firmware_disabled: 1,
            ..counts(4, 3)
        };
        assert_eq!(
            judge_vmx(firmware),
            Some((Verdict::Degraded, Reason::VmxDisabledByFirmware))
        );
        let unsupported = VmxCounts {
            unsupported: 1,
            ..firmware
        };
        assert_eq!(
            judge_vmx(unsupported),
            Some((Verdict::Degraded, Reason::VmxUnsupported))
        );
        let all_unsupported = VmxCounts {
            unsupported: 2,
            ..counts(2, 0)
        };
        assert_eq!(
            judge_vmx(all_unsupported),
            Some((Verdict::Degraded, Reason::VmxUnsupported))
        );
    }

    #[test]
    fn a_failed_selftest_case_fails_the_run_before_anything_else() {
        for c in [counts(4, 4), counts(4, 2), counts(1, 0)] {
            let c = VmxCounts {
                selftest_fail: 1,
                unsupported: 1,
                firmware_disabled: 1,
                ..c
            };
            assert_eq!(
                judge_vmx(c),
                Some((Verdict::Fail, Reason::SelftestFailed)),
                "{c:?}"
            );
        }
    }

    #[test]
    fn smp_outcomes() {
        assert_eq!(combine(true, 0, None, None), (Verdict::Ok, Reason::None));
        assert_eq!(
            combine(true, 1, None, None),
            (Verdict::Degraded, Reason::ApTimeout)
        );
        assert_eq!(
            combine(false, 0, None, None),
            (Verdict::Degraded, Reason::AcpiError)
        );
        // No ACPI says more than a missing AP.
        assert_eq!(
            combine(false, 3, None, None),
            (Verdict::Degraded, Reason::AcpiError)
        );
    }

    #[test]
    fn vmx_degraded_only_replaces_an_ok_smp_outcome() {
        let unsupported = Some((Verdict::Degraded, Reason::VmxUnsupported));
        assert_eq!(
            combine(true, 0, unsupported, None),
            (Verdict::Degraded, Reason::VmxUnsupported)
        );
        assert_eq!(
            combine(true, 1, unsupported, None),
            (Verdict::Degraded, Reason::ApTimeout)
        );
        assert_eq!(
            combine(false, 0, unsupported, None),
            (Verdict::Degraded, Reason::AcpiError)
        );
        let firmware = Some((Verdict::Degraded, Reason::VmxDisabledByFirmware));
        assert_eq!(
            combine(true, 0, firmware, None),
            (Verdict::Degraded, Reason::VmxDisabledByFirmware)
        );
    }

    #[test]
    fn vmx_fail_wins_over_any_smp_outcome() {
        let selftest = Some((Verdict::Fail, Reason::SelftestFailed));
        for (acpi_ok, failed) in [(true, 0), (true, 2), (false, 0)] {
            assert_eq!(
                combine(acpi_ok, failed, selftest, None),
                (Verdict::Fail, Reason::SelftestFailed),
                "acpi_ok={acpi_ok} failed={failed}"
            );
        }
    }

    #[test]
    fn a_core_that_stopped_on_a_fault_fails_the_run_with_its_reason() {
        for vmx in [
            None,
            Some((Verdict::Degraded, Reason::VmxFailed)),
            Some((Verdict::Fail, Reason::SelftestFailed)),
        ] {
            for (acpi_ok, failed) in [(true, 0), (true, 1), (false, 0)] {
                assert_eq!(
                    combine(acpi_ok, failed, vmx, Some(Reason::Exception)),
                    (Verdict::Fail, Reason::Exception)
                );
                assert_eq!(
                    combine(acpi_ok, failed, vmx, Some(Reason::StackOverflow)),
                    (Verdict::Fail, Reason::StackOverflow)
                );
            }
        }
    }
}
