/*
 * Virtual Machine Generation ID: 16 bytes that the VMM changes whenever the VM may have been
 * cloned (every snapshot restore on pyrite and Firecracker), so that state meant to be unique
 * (random seeds, nonces, identifiers) can be renewed.
 */
#ifndef PYRITE_VMGENID_H
#define PYRITE_VMGENID_H

#include <stdint.h>

#define VMGENID_SIZE 16

/* Copy the current generation ID into id: 0, or -1 when the VM has none (no ACPI tables, or
 * a DSDT without a VM_Gen_Counter device and its ADDR package). Cheap after the first call
 * (a 16-byte read of guest memory); the DSDT is scanned once. */
int vmgenid_read(uint8_t id[VMGENID_SIZE]);

#endif
