"""Capture: live loopback capture (scapy), the kernel witness (tracefs),
network namespaces and delay. OS-specific parts sit behind `platform`;
nothing Linux-only is imported at module level."""
