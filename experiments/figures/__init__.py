"""One script per figure: each reads tidy results and writes one PNG."""
