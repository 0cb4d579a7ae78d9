//! Port I/O through the x86_64 crate's typed `Port`.

use x86_64::instructions::port::Port;

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading the port must not have side effects that break memory safety (true for the legacy devices used here:
/// PIT, keyboard controller status, UART status).
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { Port::<u8>::new(port).read() }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The write must not break memory safety (no DMA is programmed through the ports used here).
#[inline]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { Port::<u8>::new(port).write(value) }
}
