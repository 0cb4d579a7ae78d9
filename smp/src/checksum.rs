//! What to do with an ACPI table whose bytes do not sum to zero (ACPI 6.5 §5.2.6).
//!
//! ACPICA, and so Linux, warns and uses such a table unless it was built to abort
//! (`ACPI_CHECKSUM_ABORT`, off by default): firmware with a stale checksum after a late patch is
//! common, and refusing the MADT would leave every AP unused. That is the default here too;
//! `acpi_checksum=strict` on the command line refuses the table instead. Where there is a
//! choice (XSDT or RSDT, several MADTs) a table with a good checksum still wins: the tables are
//! walked strictly first, and bad checksums are forgiven only when that finds no processor list.
//! The RSDP is always strict: its checksum is how a scan of the BIOS areas tells it from chance
//! bytes.

use core::fmt;

/// How a table with a bad checksum is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumPolicy {
    /// Warn (a [`ChecksumMismatch`] is recorded) and use the table if it is otherwise valid.
    #[default]
    Warn,
    /// Refuse the table.
    Strict,
}

impl ChecksumPolicy {
    /// The command-line word (`acpi_checksum=<word>`).
    pub fn word(self) -> &'static str {
        match self {
            ChecksumPolicy::Warn => "warn",
            ChecksumPolicy::Strict => "strict",
        }
    }

    /// Parses the command-line word.
    pub fn parse(word: &str) -> Option<Self> {
        [ChecksumPolicy::Warn, ChecksumPolicy::Strict]
            .into_iter()
            .find(|p| p.word() == word)
    }
}

/// A table used although its checksum is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumMismatch {
    /// The table's signature ("APIC", "RSDT", "XSDT").
    pub signature: [u8; 4],
    /// Its physical address.
    pub addr: u64,
    /// The checksum byte the table carries (offset 9).
    pub stored: u8,
    /// The byte that would make the table sum to zero.
    pub computed: u8,
}

impl fmt::Display for ChecksumMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sig = core::str::from_utf8(&self.signature).unwrap_or("????");
        write!(
            f,
            "table {sig} at {:#x}: checksum mismatch stored=0x{:02x} computed=0x{:02x}",
            self.addr, self.stored, self.computed
        )
    }
}

/// Offset of the checksum byte in an SDT header (ACPI 6.5 Table 5.4).
const SDT_CHECKSUM_AT: usize = 9;

/// Checks a whole SDT (`table` is its `length` bytes, header included, at least 10 bytes).
/// `Ok(None)`: the checksum is right. `Ok(Some(m))`: it is wrong and `policy` is
/// [`ChecksumPolicy::Warn`]. `Err(m)`: it is wrong and the policy is strict.
pub fn check_sdt(
    table: &[u8],
    addr: u64,
    policy: ChecksumPolicy,
) -> Result<Option<ChecksumMismatch>, ChecksumMismatch> {
    let sum = table.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    if sum == 0 {
        return Ok(None);
    }
    let stored = table[SDT_CHECKSUM_AT];
    let mut signature = [0u8; 4];
    signature.copy_from_slice(&table[..4]);
    let mismatch = ChecksumMismatch {
        signature,
        addr,
        stored,
        computed: stored.wrapping_sub(sum),
    };
    match policy {
        ChecksumPolicy::Warn => Ok(Some(mismatch)),
        ChecksumPolicy::Strict => Err(mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sum_off_by: u8) -> alloc::vec::Vec<u8> {
        let mut t = alloc::vec![0u8; 44];
        t[..4].copy_from_slice(b"APIC");
        t[4] = 44;
        t[20] = 0x37;
        let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[9] = 0u8.wrapping_sub(sum).wrapping_add(sum_off_by);
        t
    }

    #[test]
    fn a_good_checksum_passes_under_both_policies() {
        for policy in [ChecksumPolicy::Warn, ChecksumPolicy::Strict] {
            assert_eq!(check_sdt(&table(0), 0x1000, policy), Ok(None));
        }
    }

    #[test]
    fn a_bad_checksum_is_recorded_or_refused_with_both_values() {
        let t = table(3);
        let good = table(0)[9];
        let m = ChecksumMismatch {
            signature: *b"APIC",
            addr: 0x1000,
            stored: good.wrapping_add(3),
            computed: good,
        };
        assert_eq!(check_sdt(&t, 0x1000, ChecksumPolicy::Warn), Ok(Some(m)));
        assert_eq!(check_sdt(&t, 0x1000, ChecksumPolicy::Strict), Err(m));
        // The computed byte really repairs the table.
        let mut fixed = t.clone();
        fixed[9] = m.computed;
        assert_eq!(check_sdt(&fixed, 0x1000, ChecksumPolicy::Strict), Ok(None));
        assert_eq!(
            m.to_string(),
            format!(
                "table APIC at 0x1000: checksum mismatch stored=0x{:02x} computed=0x{:02x}",
                good.wrapping_add(3),
                good
            )
        );
    }

    #[test]
    fn policy_words() {
        assert_eq!(ChecksumPolicy::default(), ChecksumPolicy::Warn);
        for p in [ChecksumPolicy::Warn, ChecksumPolicy::Strict] {
            assert_eq!(ChecksumPolicy::parse(p.word()), Some(p));
        }
        assert_eq!(ChecksumPolicy::parse("lenient"), None);
        assert_eq!(ChecksumPolicy::parse(""), None);
    }
}
