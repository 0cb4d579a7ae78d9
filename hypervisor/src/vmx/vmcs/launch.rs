//! The launch state of a VMCS and which VM-entry instruction it allows.
//!
//! SDM vol. 3C 25.1, "Overview" (a VMCS's launch state is clear or launched; VMCLEAR makes it clear) and 31.3,
//! "VMX Instructions", VMLAUNCH/VMRESUME: VMLAUNCH requires a clear VMCS (else VMfailValid error 4), VMRESUME
//! a launched one (else error 5). The launch state becomes launched only when VMLAUNCH's VM entry completes:
//! a VMfailValid (errors 7, 8) or a VM-entry failure (exit reasons 33, 34, 41 with bit 31) leaves it clear, so
//! the next attempt must be VMLAUNCH again.

use core::fmt;

use super::errors::{ExitReason, InstructionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchState {
    Clear,
    Launched,
}

impl fmt::Display for LaunchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Clear => "clear",
            Self::Launched => "launched",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryInstruction {
    Vmlaunch,
    Vmresume,
}

impl fmt::Display for EntryInstruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vmlaunch => "VMLAUNCH",
            Self::Vmresume => "VMRESUME",
        })
    }
}

/// The wrong VM-entry instruction for the launch state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchError {
    pub instr: EntryInstruction,
    pub state: LaunchState,
}

impl LaunchError {
    /// What the processor reports for this call: VMfailValid with error 4 or 5.
    pub const fn instruction_error(&self) -> InstructionError {
        match self.instr {
            EntryInstruction::Vmlaunch => InstructionError::VMLAUNCH_NON_CLEAR_VMCS,
            EntryInstruction::Vmresume => InstructionError::VMRESUME_NON_LAUNCHED_VMCS,
        }
    }

    /// The instruction that the launch state allows.
    pub const fn expected(&self) -> EntryInstruction {
        match self.state {
            LaunchState::Clear => EntryInstruction::Vmlaunch,
            LaunchState::Launched => EntryInstruction::Vmresume,
        }
    }
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} called on a VMCS whose launch state is {}; {} is the one to use ({})",
            self.instr,
            self.state,
            self.expected(),
            self.instruction_error()
        )
    }
}

/// Tracks one VMCS's launch state as the hypervisor drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTracker {
    state: LaunchState,
}

impl Default for LaunchTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl LaunchTracker {
    /// A VMCS just VMCLEARed.
    pub const fn new() -> Self {
        Self {
            state: LaunchState::Clear,
        }
    }

    pub const fn state(&self) -> LaunchState {
        self.state
    }

    /// The instruction the next VM entry must use.
    pub const fn next(&self) -> EntryInstruction {
        match self.state {
            LaunchState::Clear => EntryInstruction::Vmlaunch,
            LaunchState::Launched => EntryInstruction::Vmresume,
        }
    }

    /// Checks a planned VM entry before it is executed.
    pub const fn check(&self, instr: EntryInstruction) -> Result<(), LaunchError> {
        match (instr, self.state) {
            (EntryInstruction::Vmlaunch, LaunchState::Clear)
            | (EntryInstruction::Vmresume, LaunchState::Launched) => Ok(()),
            (instr, state) => Err(LaunchError { instr, state }),
        }
    }

    /// A VM exit arrived with this exit reason after `instr`: the entry completed unless bit 31 is set.
    pub fn exited(&mut self, instr: EntryInstruction, reason: ExitReason) {
        if instr == EntryInstruction::Vmlaunch && !reason.is_entry_failure() {
            self.state = LaunchState::Launched;
        }
    }

    /// VMCLEAR of this VMCS succeeded.
    pub fn cleared(&mut self) {
        self.state = LaunchState::Clear;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlaunch_only_on_clear_and_vmresume_only_after_launch() {
        let mut tracker = LaunchTracker::new();
        assert_eq!(tracker.next(), EntryInstruction::Vmlaunch);
        assert_eq!(tracker.check(EntryInstruction::Vmlaunch), Ok(()));
        let error = tracker.check(EntryInstruction::Vmresume).unwrap_err();
        assert_eq!(error.instruction_error(), InstructionError(5));
        assert_eq!(
            format!("{error}"),
            "VMRESUME called on a VMCS whose launch state is clear; VMLAUNCH is the one to use \
             (VM-instruction error 5 (VMRESUME with non-launched VMCS))"
        );

        tracker.exited(
            EntryInstruction::Vmlaunch,
            ExitReason(ExitReason::HLT as u32),
        );
        assert_eq!(tracker.state(), LaunchState::Launched);
        assert_eq!(tracker.next(), EntryInstruction::Vmresume);
        let error = tracker.check(EntryInstruction::Vmlaunch).unwrap_err();
        assert_eq!(error.instruction_error(), InstructionError(4));
        assert_eq!(error.expected(), EntryInstruction::Vmresume);
        assert!(format!("{error}")
            .starts_with("VMLAUNCH called on a VMCS whose launch state is launched"));

        tracker.cleared();
        assert_eq!(tracker.next(), EntryInstruction::Vmlaunch);
    }

    #[test]
    fn a_failed_vm_entry_leaves_the_vmcs_clear() {
        let mut tracker = LaunchTracker::new();
        tracker.exited(
            EntryInstruction::Vmlaunch,
            ExitReason::entry_failure(ExitReason::INVALID_GUEST_STATE),
        );
        assert_eq!(tracker.state(), LaunchState::Clear);
        tracker.exited(
            EntryInstruction::Vmlaunch,
            ExitReason(ExitReason::CPUID as u32),
        );
        tracker.exited(EntryInstruction::Vmresume, ExitReason::entry_failure(33));
        assert_eq!(
            tracker.state(),
            LaunchState::Launched,
            "VMRESUME never clears it"
        );
    }
}
