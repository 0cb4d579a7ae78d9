//! The BSP's lines after every core finished the pipeline and before the summary: above the per-core
//! threshold the compact PCB and VMX-root lines (docs/serial-log.md, "Per-core lines at scale"), then
//! per-core phase times, their spread, the memory footprint and the phase line (docs/serial-log.md, "Phase
//! times and footprint").
#![deny(unsafe_code)]

use crate::log_scale::Run;
use alloc::vec::Vec;
use core::fmt;

/// What one core's `smp: pcb` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcbFacts {
    pub cpu: u32,
    pub apic_id: u32,
    pub x2apic: bool,
    /// [bottom, top) of the kernel stack.
    pub stack: (u64, u64),
    /// The guard page (0: none).
    pub guard: u64,
}

/// A run of cores whose `smp: pcb` facts advance in step: index and APIC id by 1, stack and guard page by
/// `step` bytes, the same x2APIC mode (docs/serial-log.md, "Per-core lines at scale"):
/// `pcb cpus=<a>-<b> apic_ids=<c>-<d> x2apic=<yes|no> stack=0x<bottom>-0x<top> guard=0x<g> step=0x<s>`,
/// where `stack=` and `guard=` are the first core's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcbRun {
    pub first: PcbFacts,
    pub count: u32,
    /// Bytes from one core's stack to the next one's (0 for a run of one core).
    pub step: u64,
}

impl PcbRun {
    /// Whether `next` is the next core of this run.
    fn continues_with(&self, next: &PcbFacts) -> bool {
        let first = &self.first;
        let ids = Run {
            first_cpu: first.cpu,
            first_apic_id: first.apic_id,
            count: self.count,
        };
        let step = if self.count == 1 {
            next.stack.0.wrapping_sub(first.stack.0)
        } else {
            self.step
        };
        let at = |base: u64| {
            step.checked_mul(u64::from(self.count))
                .and_then(|d| base.checked_add(d))
        };
        // A guard page of 0 means none; a run keeps it 0.
        let guard = if first.guard == 0 {
            Some(0)
        } else {
            at(first.guard)
        };
        step > 0
            && ids.continues_with(next.cpu, next.apic_id)
            && next.x2apic == first.x2apic
            && Some(next.stack.0) == at(first.stack.0)
            && Some(next.stack.1) == at(first.stack.1)
            && Some(next.guard) == guard
    }

    fn one(core: &PcbFacts) -> PcbRun {
        PcbRun {
            first: *core,
            count: 1,
            step: 0,
        }
    }

    /// Appends `core` to the run; it must continue it.
    fn push(&mut self, core: &PcbFacts) {
        if self.count == 1 {
            self.step = core.stack.0 - self.first.stack.0;
        }
        self.count += 1;
    }

    /// The runs of `cores` (sorted by index), each as long as it can be. Any two cores in step make a run,
    /// so a run of two that the third core does not continue gives its second core to a run with the third
    /// where they are in step (the BSP's stack lies apart from the APs' ones, which follow each other).
    pub fn split(cores: &[PcbFacts]) -> Vec<PcbRun> {
        let mut runs: Vec<PcbRun> = Vec::new();
        for (i, core) in cores.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if run.continues_with(core) => run.push(core),
                Some(run) if run.count == 2 && Self::one(&cores[i - 1]).continues_with(core) => {
                    *run = Self::one(&run.first);
                    let mut moved = Self::one(&cores[i - 1]);
                    moved.push(core);
                    runs.push(moved);
                }
                _ => runs.push(Self::one(core)),
            }
        }
        runs
    }
}

impl fmt::Display for PcbRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = &self.first;
        write!(
            f,
            "pcb {} x2apic={} stack=0x{:x}-0x{:x} guard=0x{:x} step=0x{:x}",
            Run {
                first_cpu: first.cpu,
                first_apic_id: first.apic_id,
                count: self.count,
            },
            if first.x2apic { "yes" } else { "no" },
            first.stack.0,
            first.stack.1,
            first.guard,
            self.step
        )
    }
}

/// The compact `vmx: root` line of a run of cores in VMX root operation: `root cpus=<a>-<b>
/// apic_ids=<c>-<d>`.
pub struct RootRun(pub Run);

impl fmt::Display for RootRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "root {}", self.0)
    }
}

/// The compact `vmx: guest` line of a run of cores whose test guest passed: `guest cpus=<a>-<b>
/// apic_ids=<c>-<d> result=ok`.
pub struct GuestOkRun(pub Run);

impl fmt::Display for GuestOkRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest {} result=ok", self.0)
    }
}

/// (min, median, max) of `values` (sorted in place); the median of an even count is the lower middle.
pub fn min_median_max(values: &mut [u64]) -> Option<(u64, u64, u64)> {
    values.sort_unstable();
    Some((
        *values.first()?,
        values[(values.len() - 1) / 2],
        *values.last()?,
    ))
}

/// A number, or `-` when there is none.
pub struct Num(pub Option<u64>);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}

/// `min=<n> median=<n> max=<n>`, or `-` when there are no values.
pub struct Num3(pub Option<(u64, u64, u64)>);

impl fmt::Display for Num3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((lo, mid, hi)) => write!(f, "min={lo} median={mid} max={hi}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(target_os = "none")]
pub use hw::report_phases;

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::exit::{self, SummaryKey};
    use crate::percpu::{self, Pcb};
    use crate::stages::ap::{slot_state, ApSlot};
    use crate::stages::{smp, vmx};
    use crate::{log_scale, memory, time};
    use core::sync::atomic::{AtomicU64, Ordering};

    /// The `smp: pcb` facts of every core with a PCB (each core wrote its own when it built it) and the
    /// cores in VMX root, as runs (`pcbs` sorted by index). A core that faulted after its PCB is listed too,
    /// as its own `pcb` line would have been.
    fn compact_lines(pcbs: &[&'static Pcb]) {
        let facts: Vec<PcbFacts> = pcbs
            .iter()
            .map(|p| PcbFacts {
                cpu: p.index,
                apic_id: p.apic_id,
                x2apic: p.x2apic,
                stack: p.stack,
                guard: p.guard_page,
            })
            .collect();
        for run in PcbRun::split(&facts) {
            log::info!(target: "smp", "{run}");
        }
        let in_root = pcbs
            .iter()
            .filter(|p| p.has_status(percpu::status::VMX_ROOT))
            .map(|p| (p.index, p.apic_id));
        for run in Run::split(in_root) {
            log::info!(target: "vmx", "{}", RootRun(run));
        }
        let guests_ok = pcbs
            .iter()
            .filter(|p| p.has_status(percpu::status::GUEST_OK))
            .map(|p| (p.index, p.apic_id));
        for run in Run::split(guests_ok) {
            log::info!(target: "vmx", "{}", GuestOkRun(run));
        }
    }

    /// Logs, above the per-core threshold, the compact PCB and VMX-root lines; then per-core phase times
    /// (DEBUG), their spread (INFO), the memory footprint and the phase line.
    pub fn report_phases() {
        let slots = smp::slots();
        let vmx_on = vmx::enabled();
        let mut pcbs: Vec<&'static Pcb> = percpu::ALL.lock().clone();
        pcbs.sort_unstable_by_key(|p| p.index);
        if log_scale::compact() {
            compact_lines(&pcbs);
        }
        let pcb_of = |index: u32| {
            pcbs.binary_search_by_key(&index, |p| p.index)
                .ok()
                .map(|i| pcbs[i])
        };
        let since_sipi = |slot: &ApSlot, at: Option<&AtomicU64>| {
            let sipi = slot.sipi_us.load(Ordering::Acquire);
            let t = at.map_or(0, |a| a.load(Ordering::Acquire));
            (sipi != 0 && t >= sipi).then(|| t - sipi)
        };
        let mut to_pcb = Vec::new();
        let mut to_vmx = Vec::new();
        for slot in slots.iter().filter(|s| s.state() == slot_state::ONLINE) {
            let pcb = since_sipi(slot, Some(&slot.online_us));
            let vmx_done = pcb_of(slot.index).map(|p| &p.vmx_done_us);
            let vmx = since_sipi(slot, vmx_done).filter(|_| vmx_on);
            log::debug!(
                target: "smp",
                "timing cpu={} apic_id={} sipi_to_pcb_us={} sipi_to_vmx_us={}",
                slot.index,
                slot.apic_id,
                Num(pcb),
                Num(vmx)
            );
            to_pcb.extend(pcb);
            to_vmx.extend(vmx);
        }
        log::info!(
            target: "smp",
            "timing aps={} sipi_to_pcb_us {} sipi_to_vmx_us {}",
            to_pcb.len(),
            Num3(min_median_max(&mut to_pcb)),
            Num3(min_median_max(&mut to_vmx))
        );

        let (image_start, image_end) = memory::image_range();
        let pcb_bytes = percpu::PCB_BYTES;
        let stack_bytes = (percpu::STACK_PAGES + 1) * memory::PAGE_SIZE;
        let ist_bytes = 3 * percpu::IST_STACK_BYTES;
        let vmx_bytes = if vmx_on { vmx::REGION_BYTES } else { 0 };
        let guest_bytes = if vmx_on && crate::stages::guest::enabled() {
            crate::stages::guest::BYTES_PER_CORE
        } else {
            0
        };
        log::info!(
            target: "memory",
            "footprint image_bytes={} per_cpu_bytes={} stack_bytes={stack_bytes} ist_bytes={ist_bytes} pcb_bytes={pcb_bytes} vmx_region_bytes={vmx_bytes} allocated_bytes={} guest_bytes={guest_bytes}",
            image_end - image_start,
            stack_bytes + ist_bytes + pcb_bytes + vmx_bytes + guest_bytes,
            memory::allocated_bytes()
        );
        log::info!(
            target: "hypervisor",
            "phases entry_us=0 acpi_us={} first_sipi_us={} online_us={} vmx_us={} summary_us={}",
            Num(exit::summary_value(SummaryKey::AcpiUs)),
            Num(exit::summary_value(SummaryKey::FirstSipiUs)),
            Num(exit::summary_value(SummaryKey::OnlineUs)),
            Num(exit::summary_value(SummaryKey::VmxUs)),
            time::now_us()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_phase_times() {
        assert_eq!(min_median_max(&mut []), None);
        assert_eq!(min_median_max(&mut [7]), Some((7, 7, 7)));
        assert_eq!(min_median_max(&mut [9, 1, 5, 3]), Some((1, 3, 9)));
        assert_eq!(min_median_max(&mut [9, 1, 5]), Some((1, 5, 9)));
    }

    fn core(cpu: u32, apic_id: u32, bottom: u64) -> PcbFacts {
        PcbFacts {
            cpu,
            apic_id,
            x2apic: true,
            stack: (bottom, bottom + 0x10000),
            guard: bottom - 0x1000,
        }
    }

    fn runs(cores: &[PcbFacts]) -> Vec<String> {
        PcbRun::split(cores).iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn pcb_runs_advance_in_step() {
        // The BSP's stack comes first and apart; the APs' stacks are 0x11000 apart (16 pages and a guard).
        let mut cores = vec![core(0, 0, 0x101000)];
        cores.extend((1..1024).map(|i| core(i, i, 0x130000 + u64::from(i - 1) * 0x11000)));
        assert_eq!(
            runs(&cores),
            [
                "pcb cpus=0 apic_ids=0 x2apic=yes stack=0x101000-0x111000 guard=0x100000 step=0x0",
                "pcb cpus=1-1023 apic_ids=1-1023 x2apic=yes stack=0x130000-0x140000 guard=0x12f000 step=0x11000",
            ]
        );
        assert_eq!(runs(&[]), Vec::<String>::new());
    }

    #[test]
    fn a_pcb_run_breaks_at_any_fact_out_of_step() {
        let base = || -> Vec<PcbFacts> {
            (0..4)
                .map(|i| core(i, i, 0x200000 + u64::from(i) * 0x11000))
                .collect()
        };
        assert_eq!(PcbRun::split(&base()).len(), 1);
        let mut apic = base();
        apic[2].apic_id = 9;
        apic[3].apic_id = 10;
        let mut mode = base();
        mode[2].x2apic = false;
        let mut stack = base();
        stack[2].stack.0 += 0x1000;
        let mut top = base();
        top[2].stack.1 += 0x1000;
        let mut guard = base();
        guard[2].guard = 0;
        let mut index = base();
        index[2].cpu = 7;
        for (what, cores) in [
            ("apic id", apic),
            ("x2apic", mode),
            ("stack bottom", stack),
            ("stack top", top),
            ("guard", guard),
            ("index", index),
        ] {
            let r = PcbRun::split(&cores);
            assert!(r.len() >= 2, "{what}: {r:?}");
            assert_eq!(r[0].count, 2, "{what}");
            assert_eq!(r.iter().map(|r| r.count).sum::<u32>(), 4, "{what}");
        }
        // Stacks going down, or two cores on the same stack, are never one run.
        let down = [core(0, 0, 0x300000), core(1, 1, 0x200000)];
        assert_eq!(PcbRun::split(&down).len(), 2);
        let same = [core(0, 0, 0x300000), core(1, 1, 0x300000)];
        assert_eq!(PcbRun::split(&same).len(), 2);
        // No guard page: 0 all along the run.
        let mut bare = base();
        for c in &mut bare {
            c.guard = 0;
        }
        assert_eq!(PcbRun::split(&bare).len(), 1);
        assert!(PcbRun::split(&bare)[0]
            .to_string()
            .contains(" guard=0x0 step=0x11000"));
    }

    #[test]
    fn guest_runs() {
        let runs: Vec<String> = Run::split([(0, 0), (1, 1), (3, 3)])
            .into_iter()
            .map(|r| GuestOkRun(r).to_string())
            .collect();
        assert_eq!(
            runs,
            [
                "guest cpus=0-1 apic_ids=0-1 result=ok",
                "guest cpus=3 apic_ids=3 result=ok"
            ]
        );
    }

    #[test]
    fn vmx_root_runs() {
        let r = Run::split([(0, 0), (1, 1), (2, 3)]);
        let text: Vec<String> = r.into_iter().map(|r| RootRun(r).to_string()).collect();
        assert_eq!(
            text,
            ["root cpus=0-1 apic_ids=0-1", "root cpus=2 apic_ids=3"]
        );
    }

    #[test]
    fn missing_numbers_print_as_a_dash() {
        assert_eq!(Num(None).to_string(), "-");
        assert_eq!(Num(Some(5)).to_string(), "5");
        assert_eq!(Num3(None).to_string(), "-");
        assert_eq!(Num3(Some((1, 2, 3))).to_string(), "min=1 median=2 max=3");
    }
}
