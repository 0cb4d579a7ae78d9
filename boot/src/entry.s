# Loader hand-off: from a 32-bit protected-mode entry (PVH or multiboot2) to 64-bit Rust.
#
# Both loaders enter with paging off, flat 32-bit segments and interrupts masked; they differ in where the
# hand-off magic lives (multiboot2: EAX; PVH: first dword of the start_info that EBX points to).
# The image is linked at its physical load address, so absolute addresses are valid before paging.

# ---------------------------------------------------------------- multiboot2 header (multiboot2 spec 3.1)
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xE85250D6                                   # magic
    .long 0                                            # architecture: i386 protected mode
    .long mb2_header_end - mb2_header                  # header length
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 0, 0                                        # end tag
    .long 8
mb2_header_end:

# ---------------------------------------------------------------- PVH ELF note (Xen ELFNOTE_PHYS32_ENTRY = 18)
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                                            # name size ("Xen\0")
    .long 4                                            # descriptor size
    .long 18                                           # type: 32-bit physical entry point
    .asciz "Xen"
    .balign 4
    .long pvh_entry

# ---------------------------------------------------------------- 32-bit entry points
    .section .text.boot32, "ax"
    .code32

    .global mb2_entry
mb2_entry:
    cli
    cld
    mov %eax, %ebp                                     # keep the magic for the report
    rdtsc
    mov %eax, boot_entry_tsc
    mov %edx, boot_entry_tsc + 4
    mov $1, %edx                                       # loader kind 1 = multiboot2
    cmp $0x36D76289, %ebp
    jne bad_handoff
    jmp common32

    .global pvh_entry
pvh_entry:
    cli
    cld
    mov (%ebx), %ebp                                   # hvm_start_info.magic
    rdtsc
    mov %eax, boot_entry_tsc
    mov %edx, boot_entry_tsc + 4
    mov $2, %edx                                       # loader kind 2 = PVH
    cmp $0x336EC578, %ebp
    jne bad_handoff
    jmp common32

# EBX = loader info (physical), EDX = loader kind, EBP = magic.
common32:
    mov $boot_stack_top, %esp
    push %edx
    call serial_init32

    # Clear .bss (the stack above lives in .bss too, but only 4 bytes of it are in use: save them).
    pop %esi
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx                                       # both ends are page-aligned (linker.ld): dwords
    xor %eax, %eax
    rep stosl
    mov $boot_stack_top, %esp
    mov %esi, %edx

    # Long mode must exist (CPUID.80000001H:EDX.LM, bit 29). CPUID clobbers EBX, which holds the info pointer.
    push %ebx
    push %edx
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    bt $29, %edx
    jnc no_long_mode
    pop %edx
    pop %ebx

    # Identity map 0..4 GiB with 2 MiB pages: PML4[0] -> PDPT[0..3] -> 4 page directories.
    mov $boot_pdpt, %eax
    or $0x3, %eax                                      # present | writable
    mov %eax, boot_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    xor %ecx, %ecx                                     # 2048 directory entries, entry i maps i * 2 MiB
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                                     # present | writable | 2 MiB page
    cmp $2038, %ecx                                    # 0xFEC00000 and up (IOAPIC, local APIC): uncached
    jb 2f
    or $0x18, %eax                                     # PWT | PCD
2:  mov %eax, boot_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax                                      # high dword: (i * 2 MiB) >> 32
    mov %eax, boot_pd + 4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b

    mov %cr4, %eax
    or $0x20, %eax                                     # CR4.PAE
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    push %edx
    mov $0xC0000080, %ecx                              # IA32_EFER
    rdmsr
    or $0x100, %eax                                    # EFER.LME
    wrmsr
    pop %edx
    mov %cr0, %eax
    or $0x80010023, %eax                               # PG | WP | NE | MP | PE (NE is also a VMX fixed-1 bit)
    and $0x9FFFFFFF, %eax                              # caches on: clear CD and NW
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    push $0x08
    push $long_mode_entry
    lret

no_long_mode:
    mov $msg_no_lm, %esi
    call serial_puts32
    jmp fail32

# Wrong magic: say so on COM1, then leave the emulator with the failure code (see docs/serial-log.md).
bad_handoff:
    mov $boot_stack_top, %esp
    call serial_init32
    mov $msg_bad_magic, %esi
    call serial_puts32
    mov %ebp, %eax
    call serial_hex32
    mov $msg_ebx, %esi
    call serial_puts32
    mov %ebx, %eax
    call serial_hex32
    mov $msg_expected, %esi
    call serial_puts32
fail32:
    mov $0x11, %al                                     # QEMU isa-debug-exit: fail
    out %al, $0xF4
    call serial_drain32
    mov $msg_shutdown, %esi                            # Bochs: "Shutdown" to port 0x8900
    mov $0x8900, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  cli
    hlt
    jmp 2b

# COM1, 115200 8N1, FIFO on. Clobbers EAX, EDX.
serial_init32:
    mov $0x3F9, %dx
    xor %al, %al
    out %al, %dx                                       # no interrupts
    mov $0x3FB, %dx
    mov $0x80, %al
    out %al, %dx                                       # DLAB
    mov $0x3F8, %dx
    mov $1, %al
    out %al, %dx                                       # divisor 1 = 115200
    mov $0x3F9, %dx
    xor %al, %al
    out %al, %dx
    mov $0x3FB, %dx
    mov $0x03, %al
    out %al, %dx                                       # 8N1
    mov $0x3FA, %dx
    mov $0xC7, %al
    out %al, %dx                                       # FIFO
    mov $0x3FC, %dx
    mov $0x03, %al
    out %al, %dx                                       # DTR | RTS
    ret

# Byte in AL to COM1 once the transmit holding register is empty. Clobbers EDX.
serial_putc32:
    push %eax
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $0x3F8, %dx
    out %al, %dx
    ret

# NUL-terminated string at ESI. Clobbers EAX, EDX, ESI.
serial_puts32:
1:  lodsb
    test %al, %al
    jz 2f
    call serial_putc32
    jmp 1b
2:  ret

# EAX as 8 hex digits. Clobbers EAX, ECX, EDX.
serial_hex32:
    mov $8, %ecx
1:  rol $4, %eax
    push %eax
    and $0xF, %eax
    movb hex_digits(%eax), %al
    call serial_putc32
    pop %eax
    dec %ecx
    jnz 1b
    ret

# Wait until the transmitter is completely empty (LSR bit 6) so nothing is lost at exit.
serial_drain32:
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x40, %al
    jz 1b
    ret

# ---------------------------------------------------------------- 64-bit trampoline into Rust
    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp                                     # end of the frame-pointer chain
    mov %edx, %edi                                     # arg 0: loader kind
    mov %ebx, %esi                                     # arg 1: loader info (physical)
    call boot_rust_entry
1:  cli
    hlt
    jmp 1b

    .section .rodata.boot32, "a"
hex_digits:    .ascii "0123456789abcdef"
msg_bad_magic: .asciz "boot32: bad loader hand-off: magic=0x"
msg_ebx:       .asciz " info=0x"
msg_expected:  .asciz " (expected multiboot2 eax=0x36d76289 or PVH start_info magic 0x336ec578); stopping\r\n"
msg_no_lm:     .asciz "boot32: this CPU has no long mode (CPUID.80000001H:EDX bit 29); stopping\r\n"
msg_shutdown:  .asciz "Shutdown"

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF                           # 0x08: 64-bit code
    .quad 0x00CF92000000FFFF                           # 0x10: data
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .data.boot32, "aw"
    .balign 8
    .global boot_entry_tsc
boot_entry_tsc: .quad 0

    .section .bss.boot32, "aw", @nobits
    .balign 4096
    .global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
    .balign 16
boot_stack: .skip 64 * 1024
    .global boot_stack_top
boot_stack_top:
