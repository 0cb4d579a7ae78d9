//! The architectural exception vectors: their mnemonics, and instructions that raise some of them on purpose
//! (the command line's `fault=`, docs/reliability.md).

/// Mnemonics of the architectural exception vectors (SDM vol. 3A table 7-1).
pub fn name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        _ => "reserved",
    }
}

/// Raises #UD (UD2). The handler reports it and stops the core, so this does not return in the image.
pub fn raise_invalid_opcode() {
    // SAFETY: UD2 only raises #UD.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) }
}

/// Raises #PF: a read of a canonical address above the 4 GiB identity map, which is not present.
pub fn raise_page_fault() {
    // SAFETY: the address is canonical but not mapped, so the read raises #PF and reads nothing.
    unsafe {
        core::ptr::read_volatile(0x5_0000_0000u64 as *const u64);
    }
}

/// Raises #GP: a read of a non-canonical address.
pub fn raise_general_protection() {
    // SAFETY: a non-canonical address raises #GP before any memory is touched.
    unsafe {
        core::ptr::read_volatile(0x8000_0000_0000_0000u64 as *const u64);
    }
}

/// Raises #DE: a division by zero.
pub fn raise_divide_error() {
    // SAFETY: dividing by zero raises #DE; only EAX/EDX (declared clobbered) are touched.
    unsafe {
        core::arch::asm!("xor edx, edx", "xor eax, eax", "div eax", out("eax") _, out("edx") _, options(nomem, nostack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_names_follow_the_sdm() {
        assert_eq!(name(14), "#PF");
        assert_eq!(name(8), "#DF");
        assert_eq!(name(9), "reserved");
    }
}
