"""The AR try-on mirror as a supervised device: the mirror process, its sessions and basket."""
