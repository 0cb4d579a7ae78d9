# AP start-up trampoline: copied to a free page below 1 MiB whose number is the SIPI vector.
#
# An AP starts here in real mode with CS = page >> 4, IP = 0 (SDM vol. 3A 9.4.4 / 8.4.4). It goes to 32-bit
# protected mode, then to long mode on the BSP's page tables, finds its own slot by APIC id in the table the
# BSP prepared (parallel bring-up: no AP waits for another, and no stack is touched until the slot's own),
# and calls the Rust entry with the slot's address. All code is position-independent or patched through the
# parameter block at the end, which the BSP fills after copying (see hypervisor/src/bringup.rs).

    .section .rodata.trampoline, "a"
    .balign 16
    .global trampoline_start
    .global trampoline_end
trampoline_start:
    .code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %cs, %bx
    shl $4, %ebx                                       # EBX = physical base of this page, kept to 64-bit code
    lgdtl tp_gdtr - trampoline_start
    mov %cr0, %eax
    or $1, %eax                                        # CR0.PE
    mov %eax, %cr0
    ljmpl *(tp_far32 - trampoline_start)

    .code32
tp_pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                                     # CR4.PAE
    mov %eax, %cr4
    mov (tp_cr3 - trampoline_start)(%ebx), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx                              # IA32_EFER.LME
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010023, %eax                               # PG | WP | NE | MP | PE, as on the BSP
    and $0x9FFFFFFF, %eax
    mov %eax, %cr0
    ljmp *(tp_far64 - trampoline_start)(%ebx)

    .code64
tp_lm64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    # Own APIC id. In x2APIC mode (the BSP's choice, tp_x2apic) the full 32-bit id from the x2APIC ID
    # register, MSR 0x802 (SDM vol. 3A 11.12.5.1), as Linux does since 6.5; an AP still in xAPIC mode (or
    # disabled) is switched first, EN then EXTD in IA32_APIC_BASE (the legal transitions, SDM 11.12.5.1).
    lea trampoline_start(%rip), %rbx
    cmpq $0, (tp_x2apic - trampoline_start)(%rbx)
    je 6f
    mov $0x1B, %ecx                                    # IA32_APIC_BASE
    rdmsr
    test $0x400, %eax                                  # EXTD: already x2APIC
    jnz 7f
    or $0x800, %eax                                    # EN (xAPIC) first
    wrmsr
    or $0x400, %eax                                    # then EXTD
    wrmsr
7:  mov $0x802, %ecx                                   # IA32_X2APIC_APICID
    rdmsr
    mov %eax, %esi
    jmp 2f
    # xAPIC mode: ids are below 255; the x2APIC id from leaf 0xB when the CPU has that leaf, else the 8-bit
    # initial id of leaf 1.
6:  xor %eax, %eax
    cpuid
    cmp $0xB, %eax
    jb 1f
    mov $0xB, %eax
    xor %ecx, %ecx
    cpuid
    test %ebx, %ebx                                    # leaf 0xB present only if EBX reports processors
    jz 1f
    mov %edx, %esi
    jmp 2f
1:  mov $1, %eax
    cpuid
    shr $24, %ebx
    mov %ebx, %esi
2:  lea trampoline_start(%rip), %rbx                  # CPUID clobbered EBX: RIP-relative gives the copy's base
    mov (tp_table - trampoline_start)(%rbx), %rdi
    mov (tp_count - trampoline_start)(%rbx), %ecx
3:  test %ecx, %ecx
    jz 4f
    cmp %esi, (%rdi)
    je 5f
    add $128, %rdi                                     # slot stride (ApSlot is 128 bytes)
    dec %ecx
    jmp 3b
4:  lock incl (tp_strays - trampoline_start)(%rbx)   # not in the table: counted for the BSP's report,
    mov %esi, (tp_stray_id - trampoline_start)(%rbx)   # no stack touched, never reported as started
8:  cli
    hlt
    jmp 8b
5:  mov 8(%rdi), %rsp                                  # the slot's stack top
    xor %ebp, %ebp
    mov (tp_entry - trampoline_start)(%rbx), %rax
    call *%rax                                         # ap_entry(slot), never returns
    jmp 8b

# Parameter block, filled by the BSP (offsets are exported as trampoline_offsets below, read by trampoline.rs).
    .balign 8
tp_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF                           # 0x08: 32-bit code
    .quad 0x00CF92000000FFFF                           # 0x10: data
    .quad 0x00AF9A000000FFFF                           # 0x18: 64-bit code
tp_gdt_end:
    .balign 8
tp_gdtr:  .short 31
          .long 0                                      # base: page + (tp_gdt - trampoline_start)
    .balign 8
tp_far32: .long 0                                      # page + (tp_pm32 - trampoline_start)
          .short 0x08
    .balign 8
tp_far64: .long 0                                      # page + (tp_lm64 - trampoline_start)
          .short 0x18
    .balign 8
tp_cr3:   .quad 0
tp_entry: .quad 0
tp_table: .quad 0
tp_count: .quad 0
tp_x2apic: .quad 0                                     # 1: the system runs its APICs in x2APIC mode
tp_strays: .long 0                                     # CPUs whose APIC id matched no slot
tp_stray_id: .long 0                                   # the last such id
trampoline_end:

    .balign 8
    .global trampoline_offsets
trampoline_offsets:
    .quad tp_gdt - trampoline_start
    .quad tp_gdtr - trampoline_start
    .quad tp_far32 - trampoline_start
    .quad tp_pm32 - trampoline_start
    .quad tp_far64 - trampoline_start
    .quad tp_lm64 - trampoline_start
    .quad tp_cr3 - trampoline_start
    .quad tp_entry - trampoline_start
    .quad tp_table - trampoline_start
    .quad tp_count - trampoline_start
    .quad tp_x2apic - trampoline_start
    .quad tp_strays - trampoline_start
    .quad tp_stray_id - trampoline_start
