//! IA32_FEATURE_CONTROL (MSR 0x3A): the firmware's gate in front of VMXON.
//!
//! SDM vol. 3C 24.7 "Enabling and entering VMX operation":
//! - bit 0 (lock): while clear, VMXON raises #GP; once set, WRMSR to the MSR raises #GP until a power-up reset;
//! - bit 1: enables VMXON *inside* SMX operation; setting it on a processor without both VMX and SMX raises #GP;
//! - bit 2: enables VMXON *outside* SMX operation.
//!
//! Policy ([`decide`], a pure function):
//! - unlocked: set bit 2, set bit 1 only if SMX is supported (and clear it otherwise, since writing it then
//!   raises #GP), set the lock bit, keep every other bit; the caller writes the value and reads it back;
//! - locked with bit 2 set: VMX is usable as it is;
//! - locked with bit 2 clear: VMX is disabled by firmware. The MSR is never written (that would #GP) and VMXON is
//!   never executed. Bit 1 alone does not help: it only enables VMXON inside SMX operation, which this hypervisor
//!   never enters (it never executes GETSEC[SENTER]).
//!
//! CR4.SMXE: this module does NOT set CR4.SMXE when it sets bit 1. CR4.SMXE only enables the GETSEC instruction
//! (SDM vol. 2D ch. 7 "Safer Mode Extensions reference", and vol. 3A 2.5 "Control registers"); it does not put the
//! processor in SMX operation (only GETSEC[SENTER] does), and VMXON outside SMX operation consults bit 2, never
//! CR4.SMXE (the VMXON operation pseudocode, vol. 3C 31.3). Setting bit 1 is therefore only a courtesy that lets a later measured launch use VMX;
//! it creates no requirement on CR4. CR4.SMXE is set only if IA32_VMX_CR4_FIXED0 demands it, through the general
//! fixed-bit rule in [`super::fixed_bits`] (no known processor reports that), and cleared if IA32_VMX_CR4_FIXED1
//! forbids it in VMX operation.
//!
//! A single system-wide lock serializes the read-modify-write: on processors where the MSR is shared by several
//! logical processors (package or core scope), two cores could both read "unlocked" and the second WRMSR would
//! then raise #GP.

use spin::Mutex;

use super::caps::Caps;
use super::{VmxCpu, VmxError, IA32_FEATURE_CONTROL};

/// Bit 0: lock.
pub const LOCK: u64 = 1 << 0;
/// Bit 1: enable VMXON inside SMX operation.
pub const VMX_INSIDE_SMX: u64 = 1 << 1;
/// Bit 2: enable VMXON outside SMX operation.
pub const VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// What to do with the MSR's current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Locked with VMX outside SMX enabled: use as is.
    AlreadyEnabled(u64),
    /// Unlocked: write this value (enables and locks), then read it back.
    WriteAndLock { new_value: u64 },
    /// Locked with VMX outside SMX disabled: give up; never write, never VMXON.
    DisabledByFirmware(u64),
}

/// The policy: see the module documentation.
pub const fn decide(value: u64, smx_supported: bool) -> Decision {
    if value & LOCK == 0 {
        let mut new_value = value | VMX_OUTSIDE_SMX | LOCK;
        if smx_supported {
            new_value |= VMX_INSIDE_SMX;
        } else {
            new_value &= !VMX_INSIDE_SMX;
        }
        Decision::WriteAndLock { new_value }
    } else if value & VMX_OUTSIDE_SMX != 0 {
        Decision::AlreadyEnabled(value)
    } else {
        Decision::DisabledByFirmware(value)
    }
}

/// The MSR before and after [`enable_feature_control`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureControlReport {
    pub before: u64,
    pub after: u64,
}

impl FeatureControlReport {
    /// Whether this call wrote (and locked) the MSR.
    pub const fn written(&self) -> bool {
        self.before != self.after
    }

    /// Whether VMXON inside SMX operation is enabled (bit 1) in the final value.
    pub const fn smx_enabled(&self) -> bool {
        self.after & VMX_INSIDE_SMX != 0
    }
}

/// One lock for the whole system (see the module documentation).
static FEATURE_CONTROL_LOCK: Mutex<()> = Mutex::new(());

/// Holds the global feature-control lock: while the guard lives, no core can write IA32_FEATURE_CONTROL
/// through [`enable_feature_control`]. The self-test uses it to run "VMXON before the lock" without another
/// core locking a shared MSR in the middle of the case.
pub(crate) fn hold_lock() -> LockGuard {
    let guard = FEATURE_CONTROL_LOCK.lock();
    #[cfg(test)]
    HELD_HERE.with(|held| held.set(true));
    LockGuard { _guard: guard }
}

/// The global feature-control lock, held by the calling core until dropped.
pub(crate) struct LockGuard {
    _guard: spin::MutexGuard<'static, ()>,
}

#[cfg(test)]
std::thread_local! {
    /// Whether this thread (a fake core) holds the global lock.
    static HELD_HERE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(test)]
impl Drop for LockGuard {
    fn drop(&mut self) {
        HELD_HERE.with(|held| held.set(false));
    }
}

/// Whether the calling thread (a fake core) holds the global feature-control lock (the fake's
/// [`ReadRendezvous`] asks).
///
/// [`ReadRendezvous`]: super::fake::ReadRendezvous
#[cfg(test)]
pub(crate) fn lock_is_held() -> bool {
    HELD_HERE.with(|held| held.get())
}

/// Applies the policy on the calling core: reads IA32_FEATURE_CONTROL, writes and locks it if it is unlocked,
/// and confirms the write by reading it back. Serialized across cores by a global lock.
pub fn enable_feature_control(cpu: &mut impl VmxCpu) -> Result<FeatureControlReport, VmxError> {
    let caps = Caps::read(cpu);
    if !caps.vmx {
        return Err(VmxError::Unsupported);
    }
    let _guard = hold_lock();
    let before = cpu.read_msr(IA32_FEATURE_CONTROL);
    match decide(before, caps.smx) {
        Decision::AlreadyEnabled(value) => Ok(FeatureControlReport {
            before: value,
            after: value,
        }),
        Decision::DisabledByFirmware(value) => Err(VmxError::DisabledByFirmware { value }),
        Decision::WriteAndLock { new_value } => {
            // SAFETY: the MSR exists (CPUID reports VMX), it is unlocked (just read under the global lock, and
            // nothing else writes it), and the value only adds enable bits the processor supports (bit 1 only
            // with SMX) plus the lock bit. It grants permission to execute VMXON and touches no memory.
            unsafe { cpu.write_msr(IA32_FEATURE_CONTROL, new_value) };
            let read_back = cpu.read_msr(IA32_FEATURE_CONTROL);
            if read_back != new_value {
                return Err(VmxError::FeatureControlWriteFailed {
                    wrote: new_value,
                    read_back,
                });
            }
            Ok(FeatureControlReport {
                before,
                after: read_back,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::{FakeCpu, FcWrites, ReadRendezvous};
    use std::sync::{Arc, Mutex as StdMutex};

    /// Every combination of lock, bit 1, bit 2 and SMX support, with an unrelated bit (SGX enable, bit 18) that
    /// must survive.
    #[test]
    fn policy_covers_all_sixteen_combinations() {
        let other = 1 << 18;
        for lock in [false, true] {
            for bit1 in [false, true] {
                for bit2 in [false, true] {
                    for smx in [false, true] {
                        let value = other
                            | if lock { LOCK } else { 0 }
                            | if bit1 { VMX_INSIDE_SMX } else { 0 }
                            | if bit2 { VMX_OUTSIDE_SMX } else { 0 };
                        let expected = match (lock, bit2) {
                            (false, _) => Decision::WriteAndLock {
                                new_value: other
                                    | LOCK
                                    | VMX_OUTSIDE_SMX
                                    | if smx { VMX_INSIDE_SMX } else { 0 },
                            },
                            (true, true) => Decision::AlreadyEnabled(value),
                            (true, false) => Decision::DisabledByFirmware(value),
                        };
                        assert_eq!(
                            decide(value, smx),
                            expected,
                            "lock={lock} bit1={bit1} bit2={bit2} smx={smx} value=0x{value:x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unlocked_msr_is_written_locked_and_read_back() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_feature_control(0);
        let report = enable_feature_control(&mut cpu).unwrap();
        assert_eq!(
            report,
            FeatureControlReport {
                before: 0,
                after: LOCK | VMX_OUTSIDE_SMX
            }
        );
        assert!(report.written());
        assert!(!report.smx_enabled());
        assert_eq!(cpu.msr_writes, vec![(IA32_FEATURE_CONTROL, 0x5)]);
        assert_eq!(cpu.feature_control(), 0x5);
    }

    #[test]
    fn smx_capable_processor_also_gets_bit_1() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.smx = true;
        cpu.set_feature_control(0);
        let report = enable_feature_control(&mut cpu).unwrap();
        assert_eq!(report.after, 0x7);
        assert!(report.smx_enabled());
    }

    #[test]
    fn locked_and_enabled_msr_is_never_written() {
        let mut cpu = FakeCpu::bochs_haswell();
        assert_eq!(cpu.feature_control(), 0x5);
        let report = enable_feature_control(&mut cpu).unwrap();
        assert_eq!(
            report,
            FeatureControlReport {
                before: 5,
                after: 5
            }
        );
        assert!(!report.written());
        assert!(cpu.msr_writes.is_empty());
    }

    #[test]
    fn locked_and_disabled_msr_is_reported_and_never_written() {
        for value in [LOCK, LOCK | VMX_INSIDE_SMX] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.smx = true;
            cpu.set_feature_control(value);
            assert_eq!(
                enable_feature_control(&mut cpu),
                Err(VmxError::DisabledByFirmware { value })
            );
            assert!(cpu.msr_writes.is_empty());
        }
    }

    #[test]
    fn a_write_that_does_not_stick_is_an_error() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_feature_control(0);
        cpu.fc_writes = FcWrites::Dropped;
        assert_eq!(
            enable_feature_control(&mut cpu),
            Err(VmxError::FeatureControlWriteFailed {
                wrote: 0x5,
                read_back: 0
            })
        );
    }

    #[test]
    fn without_vmx_the_msr_is_not_even_read() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.vmx = false;
        assert_eq!(enable_feature_control(&mut cpu), Err(VmxError::Unsupported));
        assert_eq!(cpu.msr_reads(), 0);
    }

    /// Eight "cores" share one package-scoped MSR and every core reads it before any writes it (the fake's
    /// rendezvous), so without the global lock all eight see it unlocked and the second WRMSR is a #GP (the
    /// fake panics) on every run. With the lock, exactly one core writes it.
    #[test]
    fn cores_sharing_the_msr_write_it_exactly_once() {
        const CORES: usize = 8;
        let shared = Arc::new(StdMutex::new(0u64));
        let rendezvous = ReadRendezvous::new(CORES);
        let threads: Vec<_> = (0..CORES)
            .map(|_| {
                let shared = Arc::clone(&shared);
                let rendezvous = Arc::clone(&rendezvous);
                std::thread::spawn(move || {
                    let mut cpu = FakeCpu::bochs_haswell();
                    cpu.share_feature_control(shared);
                    cpu.read_rendezvous = Some(rendezvous);
                    let report = enable_feature_control(&mut cpu).unwrap();
                    assert_eq!(report.after, 0x5);
                    cpu.msr_writes.len()
                })
            })
            .collect();
        let mut writes = 0;
        let mut panics = 0;
        for thread in threads {
            match thread.join() {
                Ok(count) => writes += count,
                Err(_) => panics += 1,
            }
        }
        assert_eq!(panics, 0, "a core faulted on the shared MSR");
        assert_eq!(writes, 1);
        assert_eq!(*shared.lock().unwrap(), 0x5);
    }
}
