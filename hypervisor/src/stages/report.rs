//! The BSP's lines after every core finished the pipeline and before the summary: per-core phase times, their
//! spread, the memory footprint and the phase line (docs/serial-log.md, "Phase times and footprint").
#![deny(unsafe_code)]

use core::fmt;

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
    use crate::{memory, time};
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Logs per-core phase times (DEBUG), their spread (INFO), the memory footprint and the phase line.
    pub fn report_phases() {
        let slots = smp::slots();
        let vmx_on = vmx::enabled();
        let mut pcbs: Vec<&'static Pcb> = percpu::ALL.lock().clone();
        pcbs.sort_unstable_by_key(|p| p.index);
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
        let vmx_bytes = if vmx_on { vmx::BYTES_PER_CORE } else { 0 };
        log::info!(
            target: "memory",
            "footprint image_bytes={} per_cpu_bytes={} stack_bytes={stack_bytes} ist_bytes={ist_bytes} pcb_bytes={pcb_bytes} vmx_region_bytes={vmx_bytes} allocated_bytes={}",
            image_end - image_start,
            stack_bytes + ist_bytes + pcb_bytes + vmx_bytes,
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

    #[test]
    fn missing_numbers_print_as_a_dash() {
        assert_eq!(Num(None).to_string(), "-");
        assert_eq!(Num(Some(5)).to_string(), "5");
        assert_eq!(Num3(None).to_string(), "-");
        assert_eq!(Num3(Some((1, 2, 3))).to_string(), "min=1 median=2 max=3");
    }
}
