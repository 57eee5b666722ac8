"""Make manylinux_2_39 wheels load on glibc 2.36 / GCC 12 hosts (Debian 12, RHEL-class)."""
