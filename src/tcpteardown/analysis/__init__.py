"""Analysis: pure functions over a Recording. Never imports socket or scapy."""
