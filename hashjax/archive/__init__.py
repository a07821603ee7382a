"""The search side: the packed index file, the exact Hamming top-k kernel
and result reports. Used by the `hashjax.search` command."""
