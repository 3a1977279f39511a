"""File formats: the bundle (pcapng), the fast pcap/pcapng reader, strace and application-log importers."""
